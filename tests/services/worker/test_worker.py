"""Worker lifecycle with real processes: crash redelivery, drain on SIGTERM, bad messages."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import aio_pika
import httpx
import orjson
import redis as redis_sync

from tests.utils.wait import wait_until
from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import Proc, Stack


def _post_in_background(url: str, body: dict) -> tuple[threading.Thread, dict]:
    """POST /generate from a thread; the dict gets the status and body once answered."""
    result: dict = {}

    def call() -> None:
        r = httpx.post(url + "/generate", json=body, timeout=30)
        result.update(status=r.status_code, body=r.json())

    t = threading.Thread(target=call)
    t.start()
    return t, result


def _wait_for_start(worker: Proc) -> None:
    """Until the worker has logged that it started a job (at most 10 s)."""
    wait_until(
        lambda: "started" in worker.output(),
        10,
        lambda: f"the worker to start a job:\n{worker.output()}",
    )


def _job_record(r: redis_sync.Redis, prefix: str) -> dict[str, str]:
    """The record of the test's one job (empty until the job is written)."""
    keys = r.keys(f"{prefix}:job:*")
    assert len(keys) <= 1, keys
    return r.hgetall(keys[0]) if keys else {}


def test_a_job_whose_worker_dies_is_finished_by_another(stack: Stack, queue: str) -> None:
    slow = stack.worker(queue, ECHO_TOKEN_DELAY_MS=200, WORKER_CONCURRENCY=1)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url
    t, result = _post_in_background(url, {"content": "a b c d e f g h i j"})
    _wait_for_start(slow)
    slow.kill()  # mid-job, unacked: RabbitMQ hands the job to the next worker
    stack.worker(queue)
    t.join(30)
    assert result == {"status": 200, "body": {"content": "a b c d e f g h i j"}}


def test_sigterm_drains_the_job_in_progress(stack: Stack, queue: str) -> None:
    worker = stack.worker(queue, ECHO_TOKEN_DELAY_MS=150, WORKER_CONCURRENCY=2)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url
    t, result = _post_in_background(url, {"content": "one two three four five six"})
    _wait_for_start(worker)
    worker.signal(signal.SIGTERM)
    t.join(30)
    assert worker.proc is not None and worker.proc.wait(10) == 0
    assert result == {"status": 200, "body": {"content": "one two three four five six"}}
    assert "draining 1 job" in worker.output()
    # Gone from routing at once (the withdrawal is pushed to the backends), not after the heartbeat
    # TTL (10 s) nor at the next periodic refresh (1 s): a job sent now would wait for a worker
    # that never comes.
    r = httpx.post(url + "/generate", json={"content": "x"}, timeout=5)
    assert r.status_code == 503


def test_a_worker_that_comes_up_is_routed_at_once(stack: Stack, queue: str) -> None:
    """Its arrival is pushed to the backends, as its withdrawal is: not found at their next
    periodic refresh (30 s here), which a request in between would have missed with a 503."""
    url = stack.backend(QUEUE_NAME=queue, REGISTRY_REFRESH_S=30).url
    stack.worker(queue, MODEL_NAME="just-arrived")  # returns once it is healthy

    def listed() -> bool:
        models = httpx.get(url + "/v1/models", timeout=5).json()["data"]
        return "just-arrived" in {m["id"] for m in models}

    wait_until(listed, 2, "the new worker's model listed by the backend")
    r = httpx.post(url + "/generate", json={"content": "hi", "meta": {"model": "just-arrived"}})
    assert r.status_code == 200, r.text


def test_malformed_message_is_reported_and_dead_lettered_not_requeued(
    stack: Stack, queue: str, redis_server: RedisServer, rabbit_server: RabbitServer, prefix: str
) -> None:
    worker = stack.worker(queue)

    async def publish() -> None:
        conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{rabbit_server.port}/")
        async with conn:
            ch = await conn.channel()
            body = orjson.dumps({"v": 1, "job_id": "bad-1", "notify": "", "kind": "nonsense"})
            await ch.default_exchange.publish(aio_pika.Message(body), routing_key=queue)
            await ch.default_exchange.publish(aio_pika.Message(b"not json"), routing_key=queue)

    asyncio.run(publish())
    r = redis_sync.Redis(port=redis_server.port, decode_responses=True)
    record = wait_until(lambda: r.hgetall(f"{prefix}:job:bad-1"), 10, "the malformed job's record")
    assert record["status"] == "error" and "malformed" in record["error"], record
    # Requeued instead, they would go round and never reach the dead-letter queue.
    dead = f"{queue}.dead"
    wait_until(
        lambda: asyncio.run(_messages(rabbit_server, dead)) == 2,
        10,
        lambda: f"both messages in {dead}:\n{worker.output()}",
    )
    assert worker.output().count("malformed job message") == 2  # each seen once, not looping


async def _messages(rabbit_server: RabbitServer, queue: str) -> int:
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{rabbit_server.port}/")
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, passive=True)
        return q.declaration_result.message_count or 0


def test_job_records_go_through_their_statuses_with_timestamps(
    stack: Stack, queue: str, redis_server: RedisServer, prefix: str
) -> None:
    stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue).url
    assert (
        httpx.post(
            url + "/generate", json={"job_id": "mine", "content": "hi"}, timeout=10
        ).status_code
        == 200
    )
    r = redis_sync.Redis(port=redis_server.port, decode_responses=True)
    (key,) = r.keys(f"{prefix}:job:*")
    job = r.hgetall(key)
    assert job["status"] == "completed" and job["content"] == "hi"
    assert job["client_job_id"] == "mine"
    assert float(job["created_at"]) <= float(job["started_at"]) <= float(job["finished_at"])
    assert job["tries"] == "1"
    assert 0 < r.ttl(key) <= 3600


def test_a_slow_job_is_seen_pending_then_in_progress(
    stack: Stack, queue: str, redis_server: RedisServer, prefix: str
) -> None:
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=100, WORKER_CONCURRENCY=1)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url
    r = redis_sync.Redis(port=redis_server.port, decode_responses=True)
    seen: list[str] = []
    done = threading.Event()

    def call() -> None:
        try:
            httpx.post(url + "/generate", json={"content": "a b c d e f g h"}, timeout=30)
        finally:
            done.set()

    # The worker holds one job at a time: the second request waits in the queue, pending.
    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    while not done.is_set():
        for key in r.keys(f"{prefix}:job:*"):
            status = r.hget(key, "status")
            if status and (not seen or seen[-1] != status):
                seen.append(status)
        time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert "pending" in seen and "in_progress" in seen, seen
    for key in r.keys(f"{prefix}:job:*"):
        job = r.hgetall(key)
        assert job["status"] == "completed" and job["tries"] == "1"
        assert float(job["created_at"]) <= float(job["started_at"]) <= float(job["finished_at"])


def test_a_job_that_keeps_killing_workers_is_failed_not_retried_forever(
    stack: Stack, queue: str, redis_server: RedisServer, prefix: str
) -> None:
    first = stack.worker(queue, ECHO_TOKEN_DELAY_MS=300, WORKER_CONCURRENCY=1, JOB_MAX_TRIES=1)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url
    t, result = _post_in_background(url, {"content": "a b c d e f"})
    r = redis_sync.Redis(port=redis_server.port, decode_responses=True)

    def running_first_try() -> bool:
        job = _job_record(r, prefix)
        return job.get("status") == "in_progress" and job.get("tries") == "1"

    # Killed mid-job, once its try is on record (marked after MARK_AFTER_S).
    wait_until(
        running_first_try,
        10,
        lambda: f"the first try on record: {_job_record(r, prefix)}",
    )
    first.kill()
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=300, WORKER_CONCURRENCY=1, JOB_MAX_TRIES=1)
    t.join(30)
    assert result["status"] == 502, result
    assert "gave up after 1 tries" in result["body"]["detail"]
    assert "(dead-lettered)" in stack.procs[-1].output()


def test_the_worker_reports_a_deadline_as_a_deadline_not_a_model_error(
    stack: Stack, queue: str, redis_server: RedisServer, rabbit_server: RabbitServer, prefix: str
) -> None:
    # Worker and backend both watch the deadline; when the worker's verdict lands first the
    # backend must still answer 504, so the record says why the job failed.
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=1000)
    now = time.time()
    job = {
        "v": 1,
        "job_id": "late-1",
        "kind": "generate",
        "model": "echo",
        "prompt": "a b c",
        "notify": "",
        "created_at": now,
        "deadline": now + 0.5,
    }

    async def publish() -> None:
        conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{rabbit_server.port}/")
        async with conn:
            ch = await conn.channel()
            await ch.default_exchange.publish(
                aio_pika.Message(orjson.dumps(job)), routing_key=queue
            )

    asyncio.run(publish())
    r = redis_sync.Redis(port=redis_server.port, decode_responses=True)
    key = f"{prefix}:job:late-1"
    wait_until(
        lambda: r.hget(key, "status") in ("error", "completed"),
        10,
        lambda: f"a final status: {r.hgetall(key)}",
    )
    record = r.hgetall(key)
    assert record["status"] == "error" and record["error_code"] == "deadline", record
    assert "deadline" in record["error"]
