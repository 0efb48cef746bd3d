"""Broker and result-store outages, produced for real: the servers are stopped and restarted."""

from __future__ import annotations

import time

import httpx

from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import Stack


def _post(url: str, content: str = "ping") -> tuple[int, dict, float]:
    started = time.monotonic()
    r = httpx.post(url + "/generate", json={"content": content}, timeout=30)
    return r.status_code, r.json(), time.monotonic() - started


def _until_ok(url: str, content: str, timeout: float = 60, pause: float = 0.5) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body, _ = _post(url, content)
        if code == 200 or time.monotonic() > deadline:
            assert code == 200, body
            return body
        time.sleep(pause)


def test_broker_down_is_503_within_2s_then_recovers(
    own_stack: Stack, own_servers: tuple[RedisServer, RabbitServer], queue: str
) -> None:
    _, rabbit = own_servers
    worker = own_stack.worker(queue)
    url = own_stack.backend(QUEUE_NAME=queue).url
    assert _post(url)[0] == 200

    rabbit.stop()
    time.sleep(0.5)
    code, body, took = _post(url)
    assert code == 503, body
    assert took < 2
    ready = httpx.get(url + "/ready")
    assert ready.status_code == 503
    assert "rabbitmq" in ready.json()["down"]
    # Once the worker's heartbeat has lapsed too (TTL 2 s), the 503 still names the broker:
    # "no live worker" would send the operator to the wrong place.
    time.sleep(2.5)
    code, body, _ = _post(url)
    assert code == 503 and "RabbitMQ" in body["detail"], body

    rabbit.start()
    # Backend and worker reconnect by themselves (the original's consumer never came back),
    # within about a second of the broker's return (reconnect attempts every 0.5 s).
    back = time.monotonic()
    assert _until_ok(url, "after the broker restart", pause=0.05) == {
        "content": "after the broker restart"
    }
    assert time.monotonic() - back < 1.5
    assert worker.proc is not None and worker.proc.poll() is None
    assert httpx.get(url + "/ready").status_code == 200


def test_redis_down_is_503_within_2s_then_recovers(
    own_stack: Stack, own_servers: tuple[RedisServer, RabbitServer], queue: str
) -> None:
    redis, _ = own_servers
    own_stack.worker(queue)
    url = own_stack.backend(QUEUE_NAME=queue).url
    assert _post(url)[0] == 200

    redis.stop()
    code, body, took = _post(url)
    assert code == 503, body
    assert took < 2
    ready = httpx.get(url + "/ready")
    assert ready.status_code == 503 and "redis" in ready.json()["down"]

    redis.start()  # an empty Redis: announcements and subscriptions must come back by themselves
    assert _until_ok(url, "after the redis restart") == {"content": "after the redis restart"}
    assert httpx.get(url + "/ready").status_code == 200


def test_a_publish_the_broker_does_not_confirm_in_time_is_withdrawn(
    stack: Stack, redis_server: RedisServer, prefix: str, queue: str
) -> None:
    """A confirm that does not come in time (a slow broker) is a 503 that says so, and the job
    is withdrawn for good, since it may have reached the queue all the same: its record says
    why (a copy that reaches a worker is skipped) and every worker is told to stop it."""
    import redis as redis_sync

    stack.worker(queue)
    # No confirm can come within a microsecond.
    url = stack.backend(QUEUE_NAME=queue, PUBLISH_TIMEOUT=0.000001).url
    store = redis_sync.Redis(port=redis_server.port, decode_responses=True)
    cancels = store.pubsub(ignore_subscribe_messages=True)
    cancels.subscribe(f"{prefix}:cancel")
    r = httpx.post(url + "/generate", json={"job_id": "slow-confirm", "content": "hi"}, timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["detail"] == (
        "RabbitMQ did not confirm the job within 1e-06 s; it was withdrawn"
    )
    [key] = store.keys(f"{prefix}:job:*")
    record = store.hgetall(key)
    assert record["client_job_id"] == "slow-confirm"
    assert record["status"] == "error" and record["error_code"] == "rejected", record
    assert record["error"].startswith("not accepted: RabbitMQ did not confirm"), record
    deadline = time.monotonic() + 5
    told = None  # (get_message returns None for the subscription's own confirmation, too)
    while told is None and time.monotonic() < deadline:
        told = cancels.get_message(timeout=0.5)
    assert told is not None and key.endswith(":" + told["data"]), told
    cancels.close()
