"""How far this host's clock is from Redis' clock, which every host of a fleet shares.

Heartbeats are timed by Redis' clock (registry.py), but job deadlines are set by the backend and
enforced by the worker, each on its own clock: on hosts whose clocks disagree by seconds, jobs
expire early or late, and queue-wait metrics are off by the skew. Nothing here corrects the
clock; the worker warns at start and `python -m tools.ops.doctor` reports it, so that the
operator syncs it (NTP).
"""

import time

from redis.asyncio import Redis

# Above this, say so: well under the heartbeat TTL (10 s by default) and any job deadline.
WARN_S = 1.0


async def offset_from_redis(redis: Redis) -> float:
    """Seconds to add to this host's time.time() to get Redis' (half a round trip precise)."""
    before = time.time()
    seconds, micros = await redis.time()
    after = time.time()
    return seconds + micros / 1e6 - (before + after) / 2
