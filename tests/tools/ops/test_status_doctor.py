"""`python -m tools.ops.status` and `python -m tools.ops.doctor` on a real stack: what they show
of a healthy one, and the failure each check exists for, with its fix."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import orjson
import redis as redis_sync

from services.common.connections import dead_letter_queue, declare_model_queue
from tests.utils.clock import skewed
from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import ROOT, Stack


def _ops(stack: Stack, tool: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"tools.ops.{tool}", *args],
        cwd=ROOT,
        env={**stack.base_env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _line(out: str, start: str) -> str:
    """The output line that starts with `start` (columns collapsed to single spaces)."""
    lines = [" ".join(line.split()) for line in out.splitlines()]
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, f"{start!r} in:\n{out}"
    return found[0]


async def _backlog(rabbit: RabbitServer, queue: str, waiting: int, dead: int) -> None:
    """A model queue nobody consumes, with `waiting` jobs in it and `dead` in its dead letters."""
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{rabbit.port}/")
    async with conn:
        ch = await conn.channel()
        await declare_model_queue(ch, queue, max_length=0)  # type: ignore[arg-type]
        for _ in range(waiting):
            await ch.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue)
        for _ in range(dead):
            await ch.default_exchange.publish(
                aio_pika.Message(b"{}"), routing_key=dead_letter_queue(queue)
            )


def _wait_dead(stack: Stack, model: str, timeout: float = 10) -> str:
    """Status once the model's last worker has dropped out (heartbeat TTL 2 s in tests)."""
    deadline = time.monotonic() + timeout
    while True:
        out = _ops(stack, "status").stdout
        if _line(out, model).split()[3] == "0":
            return out
        assert time.monotonic() < deadline, out
        time.sleep(0.5)


def test_status_shows_each_model_its_workers_queue_and_dead_letters(
    stack: Stack, queue: str, rabbit_server: RabbitServer, prefix: str
) -> None:
    worker = stack.worker(queue, MODEL_NAME="tiny")
    stack.worker(queue, MODEL_NAME="tiny")
    other = f"{queue}-idle"
    asyncio.run(_backlog(rabbit_server, other, waiting=3, dead=2))

    shown = _ops(stack, "status", "--queue", other)
    assert shown.returncode == 0, shown.stderr
    assert f"prefix '{prefix}'" in shown.stdout
    # model queue backend workers consumers queued dead announced
    row = _line(shown.stdout, "tiny ").split()
    assert row[:7] == ["tiny", queue, "echo", "2", "2", "0", "0"], shown.stdout
    assert row[8:] == ["ago"] and row[7].endswith("s"), shown.stdout  # e.g. "1s ago"
    idle = _line(shown.stdout, f"- {other}").split()
    assert idle[1:] == [other, "-", "0", "0", "3", "2", "never"], shown.stdout

    as_json = orjson.loads(_ops(stack, "status", "--json", "--queue", other).stdout)
    (model,) = as_json["models"]
    assert model["model"] == "tiny" and model["live_workers"] == 2 and model["hosts"] == {"": 2}
    assert model["queue_state"] == {
        "name": queue,
        "exists": True,
        "ready": 0,
        "consumers": 2,
        "dead": 0,
    }
    assert as_json["queues"][other]["ready"] == 3 and as_json["queues"][other]["dead"] == 2

    # Workers that die stay listed, at 0 live, so a crashed fleet does not look empty.
    for p in stack.procs:
        p.kill()
    assert worker.proc is not None and worker.proc.returncode is not None
    row = _line(_wait_dead(stack, "tiny"), "tiny ").split()
    assert row[3:5] == ["0", "0"]


def test_status_counts_a_models_workers_by_the_host_they_name(stack: Stack, queue: str) -> None:
    """WORKER_HOST (a fleet over several hosts sets it): which host lost its workers shows."""
    for host in ("gpu-b", "gpu-a", "gpu-a"):
        stack.worker(queue, MODEL_NAME="spread", WORKER_HOST=host)
    shown = _ops(stack, "status")
    assert shown.returncode == 0, shown.stderr
    row = " ".join(_line(shown.stdout, "spread ").split())
    assert row.startswith(f"spread {queue} echo 3 (gpu-a 2, gpu-b 1) 3 "), shown.stdout
    (model,) = orjson.loads(_ops(stack, "status", "--json").stdout)["models"]
    assert model["hosts"] == {"gpu-a": 2, "gpu-b": 1}
    # gpu-b's worker dies: its host drops out of the count.
    stack.procs[0].kill()
    deadline = time.monotonic() + 10
    while "3 (" in (out := _ops(stack, "status").stdout) or "2 (gpu-a 2)" not in out:
        assert time.monotonic() < deadline, out
        time.sleep(0.5)


def test_status_exits_1_when_a_server_is_unreachable(stack: Stack) -> None:
    shown = _ops(stack, "status", RABBIT_MQ_PORT="1")
    assert shown.returncode == 1
    assert "broker 127.0.0.1:1: UNREACHABLE" in shown.stdout, shown.stdout
    no_redis = _ops(stack, "status", REDIS_PORT="1")
    assert no_redis.returncode == 1
    assert "store  127.0.0.1:1: Redis UNREACHABLE" in no_redis.stdout, no_redis.stdout
    assert "models unknown: Redis (where workers announce them) is unreachable" in no_redis.stdout


def test_doctor_passes_a_healthy_stack_and_sends_a_token_through_the_queue(
    stack: Stack, queue: str, prefix: str
) -> None:
    stack.worker(queue, MODEL_NAME="tiny")
    backend = stack.backend(QUEUE_NAME=queue)
    checked = _ops(stack, "doctor", "--url", backend.url, QUEUE_NAME=queue)
    assert checked.returncode == 0, checked.stdout
    out = checked.stdout
    assert _line(out, "ok redis Redis ").endswith(f"prefix '{prefix}'")
    assert _line(out, "ok rabbitmq ").startswith("ok rabbitmq RabbitMQ ")
    assert "1 live worker(s) (echo)" in _line(out, "ok model tiny ")
    assert _line(out, "ok api ").endswith("up and ready")
    assert "one token through the queue" in _line(out, "ok generate tiny ")
    assert _line(out, "ok clock ") == "ok clock this host's clock is within 1 s of Redis'"
    assert out.splitlines()[-1] == "# 0 failed, 0 warning(s)"
    assert [line.split()[0] for line in out.splitlines()[:-1]] == ["ok"] * 8, out

    findings = orjson.loads(_ops(stack, "doctor", "--json", QUEUE_NAME=queue).stdout)
    assert {f["check"] for f in findings} == {
        "settings",
        "redis",
        "clock",
        "redis memory",
        "rabbitmq",
        "model tiny",
    }


def test_doctor_names_the_server_it_cannot_reach_and_the_setting_to_fix(stack: Stack) -> None:
    no_redis = _ops(stack, "doctor", REDIS_PORT="1")
    assert no_redis.returncode == 1
    assert "cannot reach Redis at 127.0.0.1:1" in _line(no_redis.stdout, "FAIL redis ")
    assert "fix: check REDIS_HOST / REDIS_PORT" in no_redis.stdout
    assert _line(no_redis.stdout, "skip models ") == "skip models Redis not reachable"

    wrong_password = _ops(stack, "doctor", RABBIT_MQ_PASSWORD="not-the-password")
    assert wrong_password.returncode == 1
    assert "cannot use RabbitMQ at" in _line(wrong_password.stdout, "FAIL rabbitmq ")
    assert "fix: check RABBIT_MQ_LOGIN / RABBIT_MQ_PASSWORD" in wrong_password.stdout

    bad_setting = _ops(stack, "doctor", REDIS_PORT="not-a-port")
    assert bad_setting.returncode == 1
    assert _line(bad_setting.stdout, "FAIL settings ").startswith("FAIL settings REDIS_PORT: ")
    assert "Traceback" not in bad_setting.stderr


def test_doctor_fails_a_model_without_live_workers_and_warns_of_dead_letters(
    stack: Stack, queue: str, rabbit_server: RabbitServer
) -> None:
    empty = _ops(stack, "doctor", QUEUE_NAME=queue)
    assert empty.returncode == 1
    assert "no model announced under prefix" in _line(empty.stdout, "FAIL models ")

    worker = stack.worker(queue, MODEL_NAME="tiny")
    asyncio.run(_backlog(rabbit_server, queue, waiting=0, dead=2))
    warned = _ops(stack, "doctor", QUEUE_NAME=queue)
    assert warned.returncode == 0, warned.stdout
    assert _line(warned.stdout, "warn model tiny ").endswith("2 dead-lettered")
    assert f"python -m tools.ops.deadletters list {queue}" in warned.stdout
    assert _ops(stack, "doctor", "--strict", QUEUE_NAME=queue).returncode == 1

    other_default = _ops(stack, "doctor", QUEUE_NAME="nobody-serves-this")
    assert "a request without meta.model gets 404" in _line(
        other_default.stdout, "warn default model "
    )

    worker.kill()
    _wait_dead(stack, "tiny")
    dead = _ops(stack, "doctor", QUEUE_NAME=queue)
    assert dead.returncode == 1
    assert "no live worker on queue" in _line(dead.stdout, "FAIL model tiny ")
    assert "fix: `docker compose logs worker-tiny`" in dead.stdout


def test_doctor_warns_of_a_redis_that_may_evict_answers(
    stack: Stack, redis_server: RedisServer, queue: str
) -> None:
    stack.worker(queue, MODEL_NAME="tiny")
    r = redis_sync.Redis(port=redis_server.port, decode_responses=True)
    before = r.config_get("maxmemory", "maxmemory-policy")
    try:
        r.config_set("maxmemory", str(2**30))
        r.config_set("maxmemory-policy", "allkeys-lru")
        checked = _ops(stack, "doctor", QUEUE_NAME=queue)
    finally:
        r.config_set("maxmemory", before["maxmemory"])
        r.config_set("maxmemory-policy", before["maxmemory-policy"])
    assert "maxmemory-policy allkeys-lru" in _line(checked.stdout, "warn redis memory ")
    assert "fix: set maxmemory-policy noeviction" in checked.stdout


def test_doctor_checks_the_running_stack_against_its_fleet_spec(
    stack: Stack, queue: str, prefix: str, tmp_path: Path
) -> None:
    stack.worker(queue, MODEL_NAME="tiny")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        f"redis_prefix: {prefix}\n"
        "models:\n"
        f"  - {{name: tiny, queue: {queue}, backend: echo}}\n"
        "  - {name: never-started, backend: echo}\n"
    )
    checked = _ops(stack, "doctor", "--fleet", str(fleet), QUEUE_NAME=queue)
    assert checked.returncode == 1
    assert "valid, 2 model(s)" in _line(checked.stdout, "ok fleet ")
    assert "models[1] never-started: no worker ever announced it" in checked.stdout
    assert "`docker compose logs worker-never-started`" in checked.stdout
    assert "models[0]" not in checked.stdout

    other_prefix = tmp_path / "other.yaml"
    other_prefix.write_text(f"models:\n  - {{name: tiny, queue: {queue}, backend: echo}}\n")
    warned = _ops(stack, "doctor", "--fleet", str(other_prefix), QUEUE_NAME=queue)
    assert "the fleet's redis_prefix is 'llm-wrap'" in _line(warned.stdout, "warn fleet ")

    wrong_backend = tmp_path / "vllm.yaml"
    wrong_backend.write_text(
        f"redis_prefix: {prefix}\nmodels:\n  - {{name: tiny, queue: {queue}, backend: openai, "
        "inner_llm_url: 'http://upstream:8000/v1'}\n"
    )
    warned = _ops(stack, "doctor", "--fleet", str(wrong_backend), QUEUE_NAME=queue)
    assert "by a 'echo' worker; the spec says" in _line(warned.stdout, "warn fleet models[0]")

    broken = tmp_path / "broken.yaml"
    broken.write_text("models:\n  - {name: tiny, gpus: [0, 0]}\n")
    failed = _ops(stack, "doctor", "--fleet", str(broken), QUEUE_NAME=queue)
    assert failed.returncode == 1
    assert f"FAIL fleet {broken}: models[0]." in " ".join(failed.stdout.split())


def test_doctor_asks_for_the_api_key_an_api_wants(stack: Stack, queue: str) -> None:
    stack.worker(queue, MODEL_NAME="tiny")
    backend = stack.backend(QUEUE_NAME=queue, API_KEYS="sekrit")
    refused = _ops(stack, "doctor", "--url", backend.url, QUEUE_NAME=queue)
    assert refused.returncode == 1
    assert "401, the API wants a key" in _line(refused.stdout, "FAIL api ")
    assert "fix: pass --api-key KEY or set LLM_WRAP_API_KEY" in refused.stdout

    keyed = _ops(stack, "doctor", "--url", backend.url, QUEUE_NAME=queue, LLM_WRAP_API_KEY="sekrit")
    assert keyed.returncode == 0, keyed.stdout
    assert "one token through the queue" in _line(keyed.stdout, "ok generate tiny ")

    gone = _ops(stack, "doctor", "--url", "http://127.0.0.1:1", QUEUE_NAME=queue)
    assert gone.returncode == 1 and "is the backend running, on this address?" in gone.stdout


def test_doctor_fails_a_host_whose_clock_is_off(stack: Stack, queue: str) -> None:
    stack.worker(queue, MODEL_NAME="tiny")
    checked = _ops(stack, "doctor", QUEUE_NAME=queue, **skewed("+30s"))
    assert checked.returncode == 1, checked.stdout
    line = _line(checked.stdout, "FAIL clock ")
    assert "this host's clock is 30." in line and "s ahead of Redis'" in line, line
    assert "fix: sync the clocks of every host (NTP" in checked.stdout
