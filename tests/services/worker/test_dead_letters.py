"""Dead letters and tries with real processes: a job that cannot be run goes to `<queue>.dead`,
a try is counted however fast the worker died, and a queue declared by an older version still
serves."""

from __future__ import annotations

import asyncio
import threading
import time

import aio_pika
import httpx
import orjson
import redis as redis_sync

from services.common.connections import declare_model_queue
from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import Proc, Stack


def _url(rabbit: RabbitServer) -> str:
    return f"amqp://guest:guest@127.0.0.1:{rabbit.port}/"


def _job(job_id: str, *, prompt: str = "a b c", timeout: float = 60) -> dict[str, object]:
    now = time.time()
    return {
        "v": 1,
        "job_id": job_id,
        "kind": "generate",
        "model": "echo",
        "prompt": prompt,
        "notify": "",
        "created_at": now,
        "deadline": now + timeout,
    }


async def _publish_and_drop(rabbit: RabbitServer, queue: str, job: dict[str, object]) -> None:
    """Publish a job, then take it and die without a word, as a worker killed at once does:
    back in the queue, redelivered, with no try on record."""
    conn = await aio_pika.connect(_url(rabbit))
    async with conn:
        ch = await conn.channel()
        await declare_model_queue(ch, queue, max_length=0)  # type: ignore[arg-type]
        await ch.default_exchange.publish(
            aio_pika.Message(orjson.dumps(job), message_id=str(job["job_id"])), routing_key=queue
        )
        taker = await conn.channel()
        q = await taker.declare_queue(queue, passive=True)
        assert await q.get(timeout=5) is not None
        await taker.close()  # unacked: requeued, redelivered


async def _count(rabbit: RabbitServer, queue: str) -> int:
    conn = await aio_pika.connect(_url(rabbit))
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, passive=True)
        return q.declaration_result.message_count or 0


def _wait_status(r: redis_sync.Redis, key: str, timeout: float = 15) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while r.hget(key, "status") not in (b"error", b"completed"):
        assert time.monotonic() < deadline, r.hgetall(key)
        time.sleep(0.02)
    return {k.decode(): v.decode() for k, v in r.hgetall(key).items()}


def test_an_unmarked_start_that_died_counts_as_a_try(
    stack: Stack, queue: str, redis_server: RedisServer, rabbit_server: RabbitServer, prefix: str
) -> None:
    # Its first delivery died before MARK_AFTER_S: no try on record. With JOB_MAX_TRIES=1 that
    # start was its one try: the redelivery is rejected without running.
    asyncio.run(_publish_and_drop(rabbit_server, queue, _job("once")))
    worker = stack.worker(queue, JOB_MAX_TRIES=1)
    record = _wait_status(redis_sync.Redis(port=redis_server.port), f"{prefix}:job:once")
    assert record["error_code"] == "rejected" and "gave up after 1 tries" in record["error"]
    assert "job once started" not in worker.output()
    time.sleep(0.3)
    assert asyncio.run(_count(rabbit_server, f"{queue}.dead")) == 1
    assert asyncio.run(_count(rabbit_server, queue)) == 0


def _started_or_dead(worker: Proc, timeout: float = 20) -> bool:
    """Wait for the worker to start the job (True) or dead-letter it (False)."""
    deadline = time.monotonic() + timeout
    while True:
        out = worker.output()  # a few hundred bytes: read every millisecond
        if " started" in out:
            return True
        if "(dead-lettered)" in out:
            return False
        assert time.monotonic() < deadline, out
        time.sleep(0.001)


def test_a_job_that_kills_its_worker_at_once_runs_at_most_max_tries_times(
    stack: Stack, queue: str
) -> None:
    # Each worker dies a few ms into the job, before MARK_AFTER_S would record its start: the
    # runs are counted all the same, and the job is failed (502 at once) and dead-lettered after
    # JOB_MAX_TRIES runs, not one more.
    opts = {"ECHO_TOKEN_DELAY_MS": 200, "WORKER_CONCURRENCY": 1, "JOB_MAX_TRIES": 2}
    workers = [stack.worker(queue, **opts)]
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=60).url
    result: dict[str, object] = {}

    def call() -> None:
        r = httpx.post(url + "/generate", json={"content": "a b c d e f"}, timeout=60)
        result.update(status=r.status_code, body=r.json())

    t = threading.Thread(target=call)
    t.start()
    while _started_or_dead(workers[-1]):
        workers[-1].kill()
        assert len(workers) <= 4, "the job ran on and on"
        workers.append(stack.worker(queue, **opts))
    t.join(30)
    logs = [w.output() for w in workers]
    assert sum(log.count(" started") for log in logs) == 2, logs
    assert result["status"] == 502, result
    assert "gave up after 2 tries" in str(result["body"])


def test_a_queue_declared_without_dead_lettering_still_serves_with_a_warning(
    stack: Stack, queue: str, rabbit_server: RabbitServer
) -> None:
    async def declare_old_style() -> None:
        conn = await aio_pika.connect(_url(rabbit_server))
        async with conn:
            ch = await conn.channel()
            await ch.declare_queue(queue, durable=True, arguments={"x-max-priority": 10})

    asyncio.run(declare_old_style())
    worker = stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue).url
    r = httpx.post(url + "/generate", json={"content": "still here"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"content": "still here"}
    out = worker.output()
    assert out.count("exists with other arguments") == 1, out
    assert "rabbitmqctl set_policy" in out
    assert asyncio.run(_count(rabbit_server, f"{queue}.dead")) == 0  # declared all the same
