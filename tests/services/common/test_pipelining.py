"""Auto-pipelining on a real Redis: batched round trips, replies and errors per caller."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from services.common.pipelining import AutoPipeline
from tools.local.servers import RedisServer


def _count_pipelines(redis: Redis) -> list[int]:
    """Wrap redis.pipeline so the test sees how many round trips were made."""
    executed: list[int] = []
    real_pipeline = redis.pipeline

    def counting_pipeline(*a: object, **kw: object):  # type: ignore[no-untyped-def]
        executed.append(1)
        return real_pipeline(*a, **kw)

    redis.pipeline = counting_pipeline  # type: ignore[method-assign]
    return executed


async def test_commands_of_one_turn_share_a_pipeline(
    redis_server: RedisServer, prefix: str
) -> None:
    redis = Redis(port=redis_server.port)
    auto = AutoPipeline(redis)
    executed = _count_pipelines(redis)
    replies = await asyncio.gather(
        *(auto.submit(lambda p, i=i: p.incrby(f"{prefix}:n", i)) for i in range(1, 101))
    )
    assert sorted(replies)[-1] == sum(range(1, 101))
    assert len(executed) == 1
    await redis.aclose()


async def test_commands_wait_for_the_round_trip_in_flight_then_go_together(
    redis_server: RedisServer, prefix: str
) -> None:
    redis = Redis(port=redis_server.port)
    auto = AutoPipeline(redis)
    executed = _count_pipelines(redis)
    # The first command holds the wire for 0.3 s (BLPOP on an empty list)...
    slow = auto.submit(lambda p: p.blpop([f"{prefix}:empty"], timeout=0.3))
    # ...while 50 commands come in over 50 loop turns: they leave as one more pipeline.
    later = []
    for i in range(50):
        later.append(auto.submit(lambda p, i=i: p.rpush(f"{prefix}:l", i)))
        await asyncio.sleep(0)
    assert await slow is None
    assert await asyncio.gather(*later) == list(range(1, 51))
    assert len(executed) == 2
    await redis.aclose()


async def test_a_failing_command_fails_only_its_caller(
    redis_server: RedisServer, prefix: str
) -> None:
    redis = Redis(port=redis_server.port)
    auto = AutoPipeline(redis)
    await redis.set(f"{prefix}:s", "text")
    ok = auto.submit(lambda p: p.set(f"{prefix}:t", "1"))
    bad = auto.submit(lambda p: p.incr(f"{prefix}:s"))
    assert await ok is True
    with pytest.raises(ResponseError):
        await bad
    await redis.aclose()


async def test_connection_errors_reach_every_caller() -> None:
    from tools.local.servers import free_port

    redis = Redis(port=free_port(), socket_connect_timeout=0.5)
    auto = AutoPipeline(redis)
    futs = [auto.submit(lambda p: p.ping()) for _ in range(3)]
    for fut in futs:
        with pytest.raises(ConnectionError):
            await fut
    await redis.aclose()
