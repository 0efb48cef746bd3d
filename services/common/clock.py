"""One clock for every host of a fleet: Redis' (TIME), as this process last measured it.

Times that cross hosts are compared on other hosts: a job's deadline is set by a backend and
enforced by a worker, its started/finished marks are read by the backend's metrics, heartbeats
are scored by workers and read by backends. On hosts whose clocks disagree by seconds, live
workers would look dead (503s) and jobs expire early or late. So those times are all on Redis'
clock: each process keeps its offset to it (measured at start and again on every heartbeat or
routing refresh, both of which ask Redis for TIME anyway) and `now()` applies it. A skew is still
worth fixing (logs and each host's other tools read their own clocks): the worker warns at start
and `python -m tools.ops.doctor` checks it.
"""

import time

from redis.asyncio import Redis

# Above this, say so: whatever the offset, this process is consistent, but its logs are not.
WARN_S = 1.0

_offset = 0.0  # seconds Redis' clock is ahead of this host's, as last measured


def now() -> float:
    """Epoch seconds on Redis' clock: for every time another host compares."""
    return time.time() + _offset


def observe(redis_time: tuple[int, int], before: float, after: float) -> float:
    """Record a TIME reply asked between `before` and `after` (this host's time.time()); returns
    Redis' time then.

    Redis read its clock somewhere in that round trip, so the offset lies between `at - after`
    and `at - before`. When 0 does too (the same host, or hosts kept in step by NTP) the offset
    is 0: a measured one would be noise of up to half a round trip, different in every process,
    enough to put a job's start before its acceptance. Otherwise the middle of the two.
    """
    global _offset
    seconds, micros = redis_time
    at = seconds + micros / 1e6
    # TIME is in whole microseconds, read down: Redis' clock was up to 1 us past `at`.
    low, high = at - after, at + 1e-6 - before
    _offset = 0.0 if low <= 0.0 <= high else at - (before + after) / 2
    return at


async def sync(redis: Redis) -> float:
    """Measure the offset now; returns it."""
    before = time.time()
    reply = await redis.time()
    observe(reply, before, time.time())
    return _offset
