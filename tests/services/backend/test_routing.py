"""The backend's routing view on a real Redis: a worker that withdraws is out of routing at once,
not at the next periodic refresh."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from services.backend.errors import NoLiveWorker
from services.backend.routing import ModelRouter
from services.common.keys import KeySpace
from services.common.registry import announce, withdraw
from tools.local.servers import RedisServer


async def test_a_withdrawn_worker_leaves_routing_at_once(
    redis_server: RedisServer, prefix: str
) -> None:
    redis = Redis(port=redis_server.port)
    keys = KeySpace(prefix)
    # A periodic refresh that would never come within the test: only the push can do it.
    router = ModelRouter(redis, keys, default_queue="q-default", refresh_s=60)
    await announce(redis, keys, worker_id="w1", queue="q1", names=["m1"], backend="echo", ttl=30)
    await router.start()
    try:
        assert await router.resolve("m1") == "q1"
        for _ in range(200):  # until the router's subscription is up (a publish before is lost)
            if await redis.pubsub_numsub(keys.registry_channel) == [
                (keys.registry_channel.encode(), 1)
            ]:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the router never subscribed to the registry channel")
        await withdraw(redis, keys, worker_id="w1", queue="q1")
        started = time.monotonic()
        while time.monotonic() - started < 2:
            try:
                await router.resolve("m1")
            except NoLiveWorker:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the router still routes to a worker that withdrew")
        with pytest.raises(NoLiveWorker, match="m1"):
            await router.resolve("m1")
        # A new worker is found again on the next request (a miss refreshes at once).
        await announce(
            redis, keys, worker_id="w2", queue="q1", names=["m1"], backend="echo", ttl=30
        )
        await asyncio.sleep(0.25)  # past the miss refresh's rate limit
        assert await router.resolve("m1") == "q1"
    finally:
        await router.close()
        await redis.aclose()
