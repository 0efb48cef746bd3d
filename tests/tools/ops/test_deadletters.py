"""`python -m tools.ops.deadletters` on a real stack: a poison job and an expired one land in the
dead-letter queue, `list` shows why, `replay` runs them again to a stored answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aio_pika
import orjson
import redis as redis_sync

from services.common.connections import declare_model_queue
from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import ROOT, Stack


def _job(job_id: str, timeout: float = 60) -> dict[str, object]:
    now = time.time()
    return {
        "v": 1,
        "job_id": job_id,
        "kind": "generate",
        "model": "echo",
        "prompt": f"answer of {job_id}",
        "notify": "",
        "created_at": now,
        "deadline": now + timeout,
    }


async def _poison_and_expired(
    rabbit: RabbitServer, redis: redis_sync.Redis, prefix: str, queue: str
) -> None:
    """`poison`: started and killed its worker as often as allowed (its record says so, and the
    broker redelivers it); `late`: its deadline passes while it waits."""
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{rabbit.port}/")
    async with conn:
        ch = await conn.channel()
        await declare_model_queue(ch, queue, max_length=0)  # type: ignore[arg-type]
        late = _job("late", timeout=0.05)
        await ch.default_exchange.publish(
            aio_pika.Message(orjson.dumps(late), message_id="late", expiration=0.05),
            routing_key=queue,
        )
        await ch.default_exchange.publish(
            aio_pika.Message(orjson.dumps(_job("poison")), message_id="poison", priority=7),
            routing_key=queue,
        )
        redis.hset(f"{prefix}:job:poison", mapping={"status": "in_progress", "tries": 1})
        taker = await conn.channel()
        q = await taker.declare_queue(queue, passive=True)
        deadline = time.monotonic() + 10
        while (m := await q.get(fail=False)) is None or m.message_id != "poison":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await taker.close()  # unacked: back in the queue, redelivered


def _ops(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.ops.deadletters", *args],
        cwd=ROOT,
        env=stack.base_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _wait_status(r: redis_sync.Redis, key: str, status: str, timeout: float = 15) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while r.hget(key, "status") != status:
        assert time.monotonic() < deadline, r.hgetall(key)
        time.sleep(0.02)
    return r.hgetall(key)


def test_dead_jobs_are_listed_with_their_reason_and_replayed_to_an_answer(
    stack: Stack, queue: str, redis_server: RedisServer, rabbit_server: RabbitServer, prefix: str
) -> None:
    r = redis_sync.Redis(port=redis_server.port, decode_responses=True)
    asyncio.run(_poison_and_expired(rabbit_server, r, prefix, queue))
    stack.worker(queue, JOB_MAX_TRIES=1)
    record = _wait_status(r, f"{prefix}:job:poison", "error")
    assert record["error_code"] == "rejected"

    listed = _ops(stack, "list", queue)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"2 dead job(s) in {queue}.dead", listed.stdout
    poison = next(line for line in lines if line.startswith("poison "))
    assert "rejected x1 at 20" in poison and f"from {queue}" in poison
    assert "error [rejected] gave up after 1 tries" in poison
    late = next(line for line in lines if line.startswith("late "))
    assert "expired x1" in late and "no record" in late
    only = _ops(stack, "list", f"{queue}.dead", "--reason", "expired")
    assert only.stdout.splitlines()[0] == f"1 dead job(s) in {queue}.dead"

    replayed = _ops(stack, "replay", queue, "--job", "poison")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.splitlines() == ["replayed poison", f"1 job(s) replayed to {queue}"]
    record = _wait_status(r, f"{prefix}:job:poison", "completed")
    assert record["content"] == "answer of poison" and record["tries"] == "1"

    # The late job's deadline is long past: replayed with a fresh one, it runs.
    assert _ops(stack, "replay", queue, "--all", "--reason", "expired").returncode == 0
    record = _wait_status(r, f"{prefix}:job:late", "completed")
    assert record["content"] == "answer of late"
    assert _ops(stack, "list", queue).stdout.splitlines() == [f"0 dead job(s) in {queue}.dead"]

    missing = _ops(stack, "replay", queue, "--job", "nobody")
    assert missing.returncode == 2 and "nobody: not in" in missing.stderr
    unknown = _ops(stack, "list", "no-such-queue")
    assert unknown.returncode == 2 and "no such queue" in unknown.stderr
