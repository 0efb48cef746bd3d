"""A private CA with a server and a client certificate, for TLS between services on this host
(tests of RABBIT_MQ_TLS / REDIS_TLS), made by the fleet generator's own certificate code
(tools/fleet/certs.py) for the name `localhost`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tools.fleet import certs


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path) -> TlsFiles:
    certs.ensure(directory, "llm-wrap test", "localhost", [("client", "localhost")])
    server = directory / certs.SERVER_DIR
    client = directory / certs.host_dir("client")
    # The local servers may drop from root to their own user (Debian's rabbitmq-server does):
    # a test's files, not secrets, so every one of them may read them.
    for path in [p for p in directory.rglob("*") if p.is_dir()]:
        path.chmod(0o755)
    for key in directory.rglob("*-key.pem"):
        key.chmod(0o644)
    return TlsFiles(
        ca=directory / certs.TLS_DIR / certs.CA_CERT,
        server_cert=server / certs.SERVER_CERT,
        server_key=server / certs.SERVER_KEY,
        client_cert=client / certs.CLIENT_CERT,
        client_key=client / certs.CLIENT_KEY,
    )
