"""The offset to Redis' clock (services/common/clock.py), measured against a real Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from services.common import clock
from tools.local.servers import RedisServer


async def test_a_redis_on_this_hosts_clock_is_no_offset_at_all(redis_server: RedisServer) -> None:
    """Same clock: exactly 0, in every process (a measured midpoint differs by up to half a round
    trip between processes, enough to order one's job start before another's acceptance)."""
    redis = Redis(port=redis_server.port)
    try:
        for _ in range(20):
            assert await clock.sync(redis) == 0.0
    finally:
        await redis.aclose()


def test_an_offset_outside_the_round_trip_is_its_middle() -> None:
    try:
        # Asked at 100.000 and answered at 100.010 (this host's clock); Redis said 130.005.
        assert clock.observe((130, 5000), 100.0, 100.01) == 130.005
        assert abs(clock._offset - 30.0) < 1e-9
        # Redis 20 ms behind, but within a 50 ms round trip: indistinguishable from none.
        clock.observe((100, 5000), 100.0, 100.05)
        assert clock._offset == 0.0
    finally:
        clock.observe((0, 0), 0.0, 0.0)  # back to no offset for the tests after
