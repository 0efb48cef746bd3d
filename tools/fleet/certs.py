"""The private CA of a fleet over several hosts, and the certificates it signs.

Workers on other hosts than the first reach its RabbitMQ and Redis over TLS, and both sides prove
who they are: the servers with a certificate naming the first host's address, each remote host
with a client certificate of its own. Render makes them with the `openssl` command (no Python
dependency) the first time and then keeps them, like secrets.env: a certificate is issued again
only when it is missing, signed by another CA, expires within RENEW_DAYS, or (the server's) no
longer names the first host's address. So rendering again renews what is due, and deleting a
host's `tls/` folder gives it a new key. The CA key (`tls/ca-key.pem`) is mounted nowhere: keep
it, or move it offline and bring it back to issue certificates for a new host.

Operators with a PKI of their own put its files at the same paths before rendering: files that
verify against `tls/ca.pem` and name the address are kept as they are.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools.fleet import atomic

TLS_DIR = "tls"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_DIR = f"{TLS_DIR}/server"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
CLIENT_CERT = "client.pem"
CLIENT_KEY = "client-key.pem"
# The first host's Prometheus, a client of the other hosts' worker metrics (with monitoring).
SCRAPER_DIR = f"{TLS_DIR}/prometheus"
# Names the servers answer to inside the first host's Docker network, beside its address.
SERVER_NAMES = ("rabbitmq", "redis")
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_DAYS = 30
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class CertError(Exception):
    """openssl is missing or failed; the message says which step."""


def openssl() -> str:
    binary = shutil.which("openssl")
    if binary is None:
        raise CertError("the openssl command is missing (apt-get install openssl)")
    return binary


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = openssl()
    try:
        return subprocess.run(
            [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise CertError(f"openssl {args[0]} did not finish in 60 s") from e


def _must(*args: str, cwd: Path) -> None:
    done = _openssl(*args, cwd=cwd)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CertError(f"openssl {args[0]} failed: {last}")


def san_of(address: str) -> str:
    """`IP:` or `DNS:` entry for an address, as openssl's subjectAltName takes it."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return f"DNS:{address}"
    return f"IP:{address}"


def _valid(cert: Path, ca: Path, names: Sequence[str] = ()) -> bool:
    """Signed by `ca`, good for RENEW_DAYS more, and naming every SAN entry in `names`."""
    if not cert.is_file():
        return False
    here = cert.parent
    if _openssl("verify", "-CAfile", str(ca), str(cert), cwd=here).returncode != 0:
        return False
    check = _openssl(
        "x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_DAYS * 86400), cwd=here
    )
    if check.returncode != 0:
        return False
    if not names:
        return True
    shown = _openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName", cwd=here)
    listed = {part.strip() for part in shown.stdout.replace("\n", ",").split(",")}
    listed = {p.replace("IP Address:", "IP:") for p in listed}
    return all(name in listed for name in names)


def _issue(ca_dir: Path, cert: Path, key: Path, subject: str, extensions: str) -> None:
    """A new key and a certificate for it, signed by the CA in `ca_dir`; key mode 0600."""
    with tempfile.TemporaryDirectory(prefix=".issue-", dir=ca_dir) as work_dir:
        work = Path(work_dir)
        (work / "ext.cnf").write_text(extensions)
        _must(
            "req",
            "-new",
            *_KEY,
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            subject,
            cwd=work,
        )
        _must(
            "x509", "-req", "-in", "req.csr", "-CA", str(ca_dir / CA_CERT),
            "-CAkey", str(ca_dir / CA_KEY), "-CAcreateserial", "-CAserial", "serial",
            "-days", str(LEAF_DAYS), "-sha256", "-extfile", "ext.cnf", "-out", "cert.pem",
            cwd=work,
        )  # fmt: skip
        atomic.replace(key, (work / "key.pem").read_bytes(), 0o600)
        atomic.replace(cert, (work / "cert.pem").read_bytes(), 0o644)


def ensure(
    out_dir: Path,
    fleet: str,
    address: str,
    hosts: Sequence[tuple[str, str]],
    scraper: bool = False,
) -> list[str]:
    """The CA, the servers' certificate for `address`, one certificate per (name, address) in
    `hosts` and, with `scraper`, Prometheus' client certificate; each made only where the existing
    one is missing or no longer good. Returns the files made or replaced, relative to `out_dir`.

    A host's certificate is its workers' client certificate (to RabbitMQ and Redis) and the
    server certificate of their metrics pages, which Prometheus reaches at the host's address.
    """
    written: list[str] = []
    ca_dir = out_dir / TLS_DIR
    for folder in (ca_dir, out_dir / SERVER_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    ca_dir.chmod(0o700)
    ca, ca_key = ca_dir / CA_CERT, ca_dir / CA_KEY
    if not (ca.is_file() and ca_key.is_file()):
        with tempfile.TemporaryDirectory(prefix=".ca-", dir=ca_dir) as work_dir:
            work = Path(work_dir)
            _must(
                "req", "-x509", *_KEY, "-keyout", "key.pem", "-out", "ca.pem", "-sha256",
                "-days", str(CA_DAYS), "-subj", f"/CN={fleet} fleet CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                cwd=work,
            )  # fmt: skip
            atomic.replace(ca_key, (work / "key.pem").read_bytes(), 0o600)
            atomic.replace(ca, (work / "ca.pem").read_bytes(), 0o644)
        written += [f"{TLS_DIR}/{CA_CERT}", f"{TLS_DIR}/{CA_KEY}"]

    server = out_dir / SERVER_DIR
    names = [san_of(address), *(f"DNS:{n}" for n in SERVER_NAMES)]
    if not _valid(server / SERVER_CERT, ca, names):
        _issue(
            ca_dir,
            server / SERVER_CERT,
            server / SERVER_KEY,
            f"/CN={fleet} rabbitmq and redis",
            f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n",
        )
        written += [f"{SERVER_DIR}/{SERVER_CERT}", f"{SERVER_DIR}/{SERVER_KEY}"]
    if atomic.update(server / CA_CERT, ca.read_bytes(), 0o644):
        written.append(f"{SERVER_DIR}/{CA_CERT}")

    for host, host_address in hosts:
        rel = host_dir(host)
        folder = out_dir / rel
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        name = san_of(host_address)
        if not _valid(folder / CLIENT_CERT, ca, [name]):
            _issue(
                ca_dir,
                folder / CLIENT_CERT,
                folder / CLIENT_KEY,
                f"/CN={fleet} worker host {host}",
                f"subjectAltName={name}\nextendedKeyUsage=clientAuth,serverAuth\n"
                "keyUsage=critical,digitalSignature\n",
            )
            written += [f"{rel}/{CLIENT_CERT}", f"{rel}/{CLIENT_KEY}"]
        if atomic.update(folder / CA_CERT, ca.read_bytes(), 0o644):
            written.append(f"{rel}/{CA_CERT}")
    if scraper:
        folder = out_dir / SCRAPER_DIR
        folder.mkdir(exist_ok=True)
        folder.chmod(0o700)
        if not _valid(folder / CLIENT_CERT, ca):
            _issue(
                ca_dir,
                folder / CLIENT_CERT,
                folder / CLIENT_KEY,
                f"/CN={fleet} prometheus",
                "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
            )
            written += [f"{SCRAPER_DIR}/{CLIENT_CERT}", f"{SCRAPER_DIR}/{CLIENT_KEY}"]
        # Prometheus runs as nobody: its key is readable by all, in folders only the operator
        # enters (tls/ and this one, 0700); the bind mount of a single file needs no access to them.
        (folder / CLIENT_KEY).chmod(0o644)
    return written


def host_dir(host: str) -> str:
    """Folder of a remote host's certificates, inside its render folder `hosts/<host>/`."""
    return f"hosts/{host}/{TLS_DIR}"
