"""A private CA with a server and a client certificate, for TLS between services on this host
(tests of RABBIT_MQ_TLS / REDIS_TLS). Made with the `openssl` command, valid 30 days, for
`localhost` and 127.0.0.1. Production fleets use certificates from their own CA."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise FileNotFoundError("openssl missing: apt-get install openssl")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(directory: Path, name: str, subject: str, extensions: str) -> None:
    """`name`.key and `name`.crt, signed by ca.key."""
    (directory / f"{name}.ext").write_text(extensions)
    request = f"req -new -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr"
    _openssl(*request.split(), "-subj", subject, cwd=directory)
    sign = (
        f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 "
        f"-extfile {name}.ext -out {name}.crt"
    )
    _openssl(*sign.split(), cwd=directory)


def make_certs(directory: Path) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca = "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30"
    _openssl(*ca.split(), "-subj", "/CN=llm-wrap test CA", cwd=directory)
    _signed(
        directory,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    _signed(directory, "client", "/CN=llm-wrap-client", "extendedKeyUsage=clientAuth\n")
    for key in directory.glob("*.key"):
        key.chmod(0o644)  # the servers run as this user; a test's files, not secrets
    return TlsFiles(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
