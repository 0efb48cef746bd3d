"""Worker announcements: which models are served, on which queue, by how many live workers.

Workers heartbeat into a per-queue sorted set scored by expiry time; a worker that dies simply
stops renewing and drops out after `ttl` seconds. The backend reads this to answer 404 (model
never announced) or 503 (no live worker) at once instead of letting a request wait for its
deadline. Times are Redis' clock (TIME), not the caller's: workers and backends on several hosts
compare them, and their clocks may disagree.
"""

import time
import uuid
from collections import Counter
from dataclasses import dataclass

import orjson
from pydantic import BaseModel
from redis.asyncio import Redis

from services.common import clock
from services.common.keys import KeySpace

# A model not announced for this long is forgotten (404 instead of 503).
FORGET_AFTER_S = 24 * 3600


class Announcement(BaseModel):
    model: str
    queue: str
    backend: str
    last_seen: float
    # The optional sampling parameters (protocol.OPTIONAL_PARAMS) its backend honours.
    params: list[str] = []
    # The model's context in tokens (prompt and answer), where it has one of its own.
    max_model_len: int | None = None


@dataclass(frozen=True, slots=True)
class ModelState:
    model: str
    queue: str
    live_workers: int
    backend: str = ""  # MODEL_BACKEND of the last worker that announced it
    last_seen: float = 0.0  # epoch seconds of that announcement
    params: frozenset[str] = frozenset()  # the optional sampling parameters it honours
    max_model_len: int | None = None  # its context in tokens, where it has one


def worker_id(model: str, host: str = "") -> str:
    """A new worker's id: its model, a random part, and `@host` where its host is named."""
    return f"{model}-{uuid.uuid4().hex[:8]}" + (f"@{host}" if host else "")


def host_of(worker: str) -> str:
    """The host a worker id names ("" for none)."""
    return worker.rpartition("@")[2] if "@" in worker else ""


async def live_hosts(redis: Redis, keys: KeySpace, queues: list[str]) -> dict[str, Counter[str]]:
    """Each queue's live workers counted by host ("" for workers on an unnamed host)."""
    now = clock.now()
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zrangebyscore(keys.workers(queue), now, "+inf")
        found = await pipe.execute()
    return {
        queue: Counter(host_of(w.decode() if isinstance(w, bytes) else w) for w in workers)
        for queue, workers in zip(queues, found, strict=True)
    }


async def announce(
    redis: Redis,
    keys: KeySpace,
    *,
    worker_id: str,
    queue: str,
    names: list[str],
    backend: str,
    ttl: float,
    params: list[str] | None = None,
    max_model_len: int | None = None,
) -> None:
    """Renew this worker's heartbeat and its model names' announcements; prune expired workers."""
    await clock.sync(redis)
    now = clock.now()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.workers(queue), {worker_id: now + ttl})
        pipe.zremrangebyscore(keys.workers(queue), "-inf", now)
        pipe.expire(keys.workers(queue), int(FORGET_AFTER_S))
        for name in names:
            ann = Announcement(
                model=name,
                queue=queue,
                backend=backend,
                last_seen=now,
                params=params or [],
                max_model_len=max_model_len,
            )
            pipe.hset(keys.models, name, ann.model_dump_json())
        await pipe.execute()


async def arrived(redis: Redis, keys: KeySpace, *, queue: str) -> None:
    """Tell the backends a worker of `queue` now serves, so they route to it at once (not at
    their next periodic refresh, which a request in between would miss: a 503)."""
    await redis.publish(keys.registry_channel, queue)


async def withdraw(redis: Redis, keys: KeySpace, *, worker_id: str, queue: str) -> None:
    """Remove this worker's heartbeat at shutdown and tell the backends, so they stop routing to
    it at once (not at their next periodic refresh)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.workers(queue), worker_id)
        pipe.publish(keys.registry_channel, queue)
        await pipe.execute()


async def read_models(redis: Redis, keys: KeySpace) -> list[ModelState]:
    """Every model announced within FORGET_AFTER_S, with its count of live workers."""
    before = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hgetall(keys.models)
        reply, raw = await pipe.execute()
    now = clock.observe(reply, before, time.time())
    announced = []
    for value in raw.values():
        try:
            ann = Announcement.model_validate(orjson.loads(value))
        except ValueError:
            continue
        if now - ann.last_seen < FORGET_AFTER_S:
            announced.append(ann)
    if not announced:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for ann in announced:
            pipe.zcount(keys.workers(ann.queue), now, "+inf")
        counts = await pipe.execute()
    return [
        ModelState(
            model=a.model,
            queue=a.queue,
            live_workers=int(c),
            backend=a.backend,
            last_seen=a.last_seen,
            params=frozenset(a.params),
            max_model_len=a.max_model_len,
        )
        for a, c in zip(announced, counts, strict=True)
    ]
