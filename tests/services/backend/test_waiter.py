"""The result subscription on a real Redis: pushes wake the right request, quiet spells are
health-checked, and a dropped subscription loses nothing (the sweep reads stored outcomes)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from services.backend import waiter as waiter_module
from services.backend.waiter import ResultWaiter
from services.common.keys import KeySpace
from services.common.protocol import JobOutcome, JobStatus
from services.common.store import ResultStore
from tools.local.servers import RedisServer


def _done(job_id: str, content: str) -> JobOutcome:
    return JobOutcome(job_id=job_id, status=JobStatus.COMPLETED, content=content)


async def _pings(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def test_pushes_wake_their_own_request_and_quiet_spells_are_pinged(
    redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiter_module, "HEALTH_CHECK_S", 0.05)
    redis = Redis(port=redis_server.port)
    store = ResultStore(redis, KeySpace(prefix), ttl=60)
    waiter = ResultWaiter(redis, store, f"{prefix}:chan")
    await waiter.start()
    try:
        assert waiter.subscribed.is_set()
        a, b = waiter.expect("a"), waiter.expect("b")
        pings = await _pings(redis)
        await asyncio.sleep(0.4)  # several health checks pass on the quiet subscription
        assert await _pings(redis) >= pings + 3
        assert waiter.subscribed.is_set()
        assert await redis.pubsub_numsub(f"{prefix}:chan") == [(f"{prefix}:chan".encode(), 1)]
        await store.finish(_done("b", "for b"), f"{prefix}:chan")
        assert (await asyncio.wait_for(b, 2)).content == "for b"
        assert not a.done()
        await redis.publish(f"{prefix}:chan", b"not json")  # logged and dropped
        await store.finish(_done("a", "for a"), f"{prefix}:chan")
        assert (await asyncio.wait_for(a, 2)).content == "for a"
    finally:
        await waiter.close()
        await store.aclose()
        await redis.aclose()


async def test_an_answer_pushed_while_the_subscription_was_down_is_still_delivered(
    redis_server: RedisServer, prefix: str
) -> None:
    redis = Redis(port=redis_server.port)
    store = ResultStore(redis, KeySpace(prefix), ttl=60)
    waiter = ResultWaiter(redis, store, f"{prefix}:chan2")
    await waiter.start()
    try:
        fut = waiter.expect("late")
        # Drop the subscriber's connection, and store the answer before it comes back: its push
        # reaches nobody.
        await redis.client_kill_filter(_type="pubsub")
        await store.finish(_done("late", "kept"), f"{prefix}:chan2")
        # Resubscribing reads back the outcomes of every waiting job.
        assert (await asyncio.wait_for(fut, 5)).content == "kept"
        assert waiter.subscribed.is_set()
    finally:
        await waiter.close()
        await store.aclose()
        await redis.aclose()
