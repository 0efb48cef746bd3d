"""A fleet over two hosts, live: the generator's two compose projects started on this Docker
engine, the second reaching the first only through its published TLS ports at this host's
address, as it would from another machine.

One engine stands in for two machines, so the second project gets a network of its own name
(on two machines both would be `network`, each on its own engine): its worker then cannot reach
`rabbitmq` or `redis` by service name and must use the address and TLS ports it was rendered
with. RabbitMQ's own connection list proves the link is TLS.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.smoke.conftest import wait_until
from tools.fleet import render
from tools.local.servers import free_port

pytestmark = pytest.mark.smoke

HEAD, FAR = "llmwrap-mh", "llmwrap-mh-far"


def host_address() -> str:
    """An address of this host that its containers reach (the default route's source)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: UDP connect only picks a route
        return str(probe.getsockname()[0])
    except OSError:
        return "172.17.0.1"  # docker0's gateway
    finally:
        probe.close()


@dataclass
class Fleet:
    out: Path
    url: str
    key: str
    address: str
    rabbitmq_port: int
    redis_port: int
    metrics_port: int

    def compose(self, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", "-f", str(folder / "docker-compose.yml"), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=400,
        )


def _up(fleet: Fleet, folder: Path) -> None:
    up = fleet.compose(folder, "up", "-d", "--wait", "--wait-timeout", "300")
    if up.returncode != 0:
        logs = fleet.compose(folder, "logs", "--no-color", "--tail", "40").stdout
        pytest.fail(f"docker compose up failed in {folder}:\n{up.stderr}\n{logs}")


@pytest.fixture(scope="module")
def fleet(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    address = host_address()
    port, rabbitmq_port, redis_port, metrics_port = (free_port() for _ in range(4))
    spec = {
        "name": HEAD,
        "network": "llmwrap_mh_head",
        "images": images,
        "backend": {"host": "127.0.0.1", "port": port},
        "hosts": [{"name": "head", "address": address}, {"name": "far", "address": "far.test"}],
        "links": {
            "rabbitmq_port": rabbitmq_port,
            "redis_port": redis_port,
            "metrics_port": metrics_port,
        },
        # Rendered, not started (its profile stays off): the far worker publishes its metrics.
        "monitoring": {
            "enabled": True,
            "prometheus_port": free_port(),
            "grafana_port": free_port(),
        },
        "models": [
            {"name": "near", "backend": "echo"},
            {"name": "far-echo", "backend": "echo", "host": "far"},
        ],
    }
    work = tmp_path_factory.mktemp("multi-host")
    (work / "fleet.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = work / "deploy"
    render(work / "fleet.yaml", out)
    far = out / "hosts" / "far" / "docker-compose.yml"
    far.write_text(far.read_text().replace('"llmwrap_mh_head"', '"llmwrap_mh_far"'))
    secrets = dict(
        line.split("=", 1)
        for line in (out / "env/secrets.env").read_text().splitlines()
        if "=" in line
    )
    made = Fleet(
        out,
        f"http://127.0.0.1:{port}",
        secrets["API_KEYS"],
        address,
        rabbitmq_port,
        redis_port,
        metrics_port,
    )
    for folder in (out / "hosts" / "far", out):
        made.compose(folder, "down", "-v", "--remove-orphans")
    try:
        _up(made, out)
        _up(made, out / "hosts" / "far")
        yield made
    finally:
        made.compose(out / "hosts" / "far", "down", "-v", "--remove-orphans")
        made.compose(out, "down", "-v", "--remove-orphans")


def test_a_worker_on_the_other_host_answers_through_the_first(fleet: Fleet) -> None:
    headers = {"Authorization": f"Bearer {fleet.key}"}
    with httpx.Client(base_url=fleet.url, headers=headers, timeout=30) as http:
        models = wait_until(
            lambda: (
                {m["id"] for m in http.get("/v1/models").json()["data"]} >= {"near", "far-echo"}
            ),
            30,
        )
        assert models, http.get("/v1/models").text
        for model in ("far-echo", "near"):
            body = {"meta": {"model": model}, "content": f"hello {model}"}
            answer = http.post("/generate", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"content": f"hello {model}"}
        streamed = http.post(
            "/v1/chat/completions",
            json={
                "model": "far-echo",
                "stream": True,
                "messages": [{"role": "user", "content": "a b c"}],
            },
        )
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")


def test_the_far_worker_is_on_tls_and_the_near_one_is_not(fleet: Fleet) -> None:
    listed = subprocess.run(
        ["docker", "exec", f"{HEAD}-rabbitmq-1", "rabbitmqctl", "-q", "list_connections", "ssl"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # The backend's and the near worker's plain connections, and the far worker's TLS one.
    assert listed.count("true") >= 1 and listed.count("false") >= 2, listed


def _talk(fleet: Fleet, port: int, cert: bool) -> bytes:
    """Open TLS to the first host's `port` as the far host would, with or without its client
    certificate, say hello in the server's protocol and return the first bytes it answers."""
    context = ssl.create_default_context(cafile=str(fleet.out / "tls" / "ca.pem"))
    if cert:
        folder = fleet.out / "hosts" / "far" / "tls"
        context.load_cert_chain(folder / "client.pem", folder / "client-key.pem")
    hello = b"PING\r\n" if port == fleet.redis_port else b"AMQP\x00\x00\x09\x01"
    with socket.create_connection((fleet.address, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=fleet.address) as tls:
            # TLS 1.3 reports a refused client certificate on the first read, not in the
            # handshake; a server that drops the connection reads as b"".
            tls.settimeout(10)
            tls.sendall(hello)
            return tls.recv(64)


@pytest.mark.parametrize("which", ["rabbitmq", "redis"])
def test_the_tls_ports_require_the_fleet_client_certificate(fleet: Fleet, which: str) -> None:
    port = fleet.rabbitmq_port if which == "rabbitmq" else fleet.redis_port
    # With the certificate the server speaks: AMQP's connection.start, Redis' auth error.
    answer = _talk(fleet, port, cert=True)
    assert answer.startswith(b"\x01\x00\x00" if which == "rabbitmq" else b"-NOAUTH"), answer
    try:
        refused = _talk(fleet, port, cert=False)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        refused = b""
    assert refused == b""


def test_plain_tcp_on_the_tls_port_gets_nothing(fleet: Fleet) -> None:
    with socket.create_connection((fleet.address, fleet.rabbitmq_port), timeout=10) as raw:
        raw.settimeout(10)
        raw.sendall(b"AMQP\x00\x00\x09\x01")
        try:
            answer = raw.recv(64)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x01\x00\x00"), answer


def _far_metrics(fleet: Fleet, cert: bool) -> bytes:
    """GET the far worker's metrics page as the first host's Prometheus would: HTTPS to the far
    host's address (its certificate names `far.test`; here that host is this one), with the
    client certificate render made for Prometheus, or without."""
    context = ssl.create_default_context(cafile=str(fleet.out / "tls" / "ca.pem"))
    if cert:
        folder = fleet.out / "tls" / "prometheus"
        context.load_cert_chain(folder / "client.pem", folder / "client-key.pem")
    answer = b""
    with socket.create_connection(("127.0.0.1", fleet.metrics_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="far.test") as tls:
            tls.settimeout(10)
            tls.sendall(b"GET /metrics HTTP/1.0\r\nHost: far.test\r\n\r\n")
            while chunk := tls.recv(65536):
                answer += chunk
    return answer


def test_prometheus_reaches_the_far_workers_metrics_over_tls_only(fleet: Fleet) -> None:
    config = yaml.safe_load((fleet.out / "monitoring" / "prometheus.yml").read_text())
    [remote] = [j for j in config["scrape_configs"] if j["job_name"] == "llm-wrap-workers-remote"]
    assert remote["static_configs"][0]["targets"] == [f"far.test:{fleet.metrics_port}"]
    page = _far_metrics(fleet, cert=True)
    assert page.startswith(b"HTTP/1.0 200"), page[:200]
    assert b'llm_wrap_worker_capacity{queue="far-echo"}' in page
    try:
        refused = _far_metrics(fleet, cert=False)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        refused = b""
    assert refused == b""
