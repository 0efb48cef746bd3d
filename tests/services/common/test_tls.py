"""RABBIT_MQ_TLS / REDIS_TLS against a RabbitMQ and a Redis that speak only TLS and require a
client certificate: a job goes through (backend -> broker -> worker -> Redis -> backend, the
bare Redis connections too), the operator commands read the stack, and a wrong CA or a
missing client certificate is refused with a message that says so."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from services.backend.config import Settings
from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import ROOT, Stack, stack_env
from tools.local.tls import TlsFiles, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_servers(
    certs: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RedisServer, RabbitServer]]:
    redis = RedisServer(tmp_path_factory.mktemp("redis-tls"), tls=certs).start()
    rabbit = RabbitServer(tmp_path_factory.mktemp("rabbit-tls"), tls=certs).start()
    yield redis, rabbit
    rabbit.stop()
    redis.stop()


def _tls_env(certs: TlsFiles, **extra: str) -> dict[str, str]:
    return {
        "RABBIT_MQ_TLS": "true",
        "REDIS_TLS": "true",
        "RABBIT_MQ_HOST": "localhost",  # the name in the server's certificate
        "REDIS_HOST": "localhost",
        "TLS_CA_FILE": str(certs.ca),
        "TLS_CERT_FILE": str(certs.client_cert),
        "TLS_KEY_FILE": str(certs.client_key),
        **extra,
    }


@pytest.fixture
def tls_stack(
    tls_servers: tuple[RedisServer, RabbitServer], certs: TlsFiles, prefix: str, tmp_path: Path
) -> Iterator[Stack]:
    redis, rabbit = tls_servers
    s = Stack({**stack_env(redis.port, rabbit.port, prefix), **_tls_env(certs)}, tmp_path)
    yield s
    s.close()


def _ops(stack: Stack, tool: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"tools.ops.{tool}"],
        cwd=ROOT,
        env={**stack.base_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_job_goes_through_tls_links_with_client_certificates(
    tls_stack: Stack, queue: str
) -> None:
    tls_stack.worker(queue, MODEL_NAME="tiny")
    backend = tls_stack.backend(QUEUE_NAME=queue)
    r = httpx.post(
        backend.url + "/generate",
        json={"job_id": "over-tls", "content": "hello over TLS", "meta": {"model": "tiny"}},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"content": "hello over TLS"}
    # Streamed: pieces through the Redis stream and the bare subscription connection.
    streamed = httpx.post(
        backend.url + "/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
        },
        timeout=30,
    )
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    assert httpx.get(backend.url + "/ready", timeout=10).status_code == 200

    doctor = _ops(tls_stack, "doctor", QUEUE_NAME=queue)
    assert doctor.returncode == 0, doctor.stdout
    assert " over TLS, prefix " in doctor.stdout
    assert "RabbitMQ" in doctor.stdout and " over TLS, vhost " in doctor.stdout
    status = _ops(tls_stack, "status")
    assert status.returncode == 0 and "tiny" in status.stdout, status.stdout


def test_a_wrong_ca_or_no_client_certificate_is_refused_with_a_tls_hint(
    tls_stack: Stack, certs: TlsFiles, tmp_path: Path
) -> None:
    other = make_certs(tmp_path / "other-ca")
    wrong_ca = _ops(tls_stack, "doctor", TLS_CA_FILE=str(other.ca))
    assert wrong_ca.returncode == 1
    lines = [" ".join(line.split()) for line in wrong_ca.stdout.splitlines()]
    assert any(line.startswith("FAIL redis cannot reach Redis") for line in lines), lines
    assert any(line.startswith("FAIL rabbitmq cannot use RabbitMQ") for line in lines), lines
    assert wrong_ca.stdout.count("fix: a TLS problem: TLS_CA_FILE must hold the CA") == 2

    no_client_cert = _ops(tls_stack, "doctor", TLS_CERT_FILE="", TLS_KEY_FILE="")
    assert no_client_cert.returncode == 1
    assert "FAIL  redis" in no_client_cert.stdout and "FAIL  rabbitmq" in no_client_cert.stdout

    plain = _ops(tls_stack, "doctor", RABBIT_MQ_TLS="false", REDIS_TLS="false")
    assert plain.returncode == 1
    assert "FAIL  redis" in plain.stdout and "FAIL  rabbitmq" in plain.stdout


def test_tls_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certs: TlsFiles
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TLS_CERT_FILE", str(certs.client_cert))
    with pytest.raises(ValidationError, match="TLS_CERT_FILE and TLS_KEY_FILE go together"):
        Settings()
    monkeypatch.delenv("TLS_CERT_FILE")
    monkeypatch.setenv("TLS_CA_FILE", str(tmp_path / "missing.crt"))
    with pytest.raises(ValidationError, match="TLS_CA_FILE: no such file"):
        Settings()
    monkeypatch.setenv("TLS_CA_FILE", str(certs.ca))
    monkeypatch.setenv("RABBIT_MQ_TLS", "true")
    assert Settings().amqp_url.startswith("amqps://")
