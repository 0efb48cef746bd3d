"""The fleet as it is now, read from RabbitMQ and Redis themselves: the models workers announced,
how many of those workers are alive, and each model queue's waiting jobs, consumers and dead
letters. `status` prints it, `doctor` checks it.

No backend is needed, so both work while the API is down, and from any host that reaches the
broker and the store (a fleet over several GPU hosts shares one of each), with the services' own
settings (`CommonSettings`: RABBIT_MQ_*, REDIS_*, REDIS_PREFIX, from the environment or `.env`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from aio_pika.abc import AbstractConnection
from aiormq.exceptions import AMQPError
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.common import clock
from services.common.connections import (
    connect_broker,
    dead_letter_queue,
    make_redis,
    queue_counts,
)
from services.common.keys import KeySpace
from services.common.logs import describe
from services.common.registry import live_hosts, read_models
from services.common.settings import CommonSettings

# Seconds each server gets to answer: an operator's command must not hang on a dead host.
TIMEOUT_S = 3.0


@dataclass
class QueueState:
    """A queue as the broker reports it; `exists` False when nobody declared it."""

    name: str
    exists: bool
    ready: int = 0  # jobs waiting (not those a worker holds)
    consumers: int = 0
    dead: int | None = None  # jobs in its dead-letter queue; None: it has none


@dataclass
class ModelRow:
    """One announced model: its queue, the workers alive on it and the queue's state."""

    model: str
    queue: str
    backend: str
    live_workers: int
    last_seen: float  # epoch seconds of the last announcement, on this host's clock
    queue_state: QueueState | None = None  # None when the broker was not reachable
    # The queue's live workers by the host they name (WORKER_HOST; "" for unnamed).
    hosts: dict[str, int] = field(default_factory=dict)


@dataclass
class RedisInfo:
    version: str
    used_memory: int
    maxmemory: int  # 0: no limit
    policy: str | None  # maxmemory-policy; None when CONFIG is refused (managed Redis)
    clock_offset: float = 0.0  # seconds Redis' clock is ahead of this host's


@dataclass
class Snapshot:
    taken_at: float
    settings: CommonSettings
    redis: RedisInfo | None = None
    redis_error: str | None = None
    broker_version: str | None = None
    broker_error: str | None = None
    models: list[ModelRow] = field(default_factory=list)
    # Every queue looked at: the announced ones and those asked for (e.g. a fleet's).
    queues: dict[str, QueueState] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "taken_at": self.taken_at,
            "rabbitmq": {
                "address": f"{s.RABBIT_MQ_HOST}:{s.RABBIT_MQ_PORT}",
                "version": self.broker_version,
                "error": self.broker_error,
            },
            "redis": {
                "address": f"{s.REDIS_HOST}:{s.REDIS_PORT}",
                "prefix": s.REDIS_PREFIX,
                **(asdict(self.redis) if self.redis else {}),
                "error": self.redis_error,
            },
            "models": [asdict(m) for m in self.models],
            "queues": {name: asdict(q) for name, q in self.queues.items()},
        }


async def read_redis(redis: Redis) -> RedisInfo:
    info = await redis.info()
    policy: str | None
    try:
        policy = (await redis.config_get("maxmemory-policy")).get("maxmemory-policy")
    except ResponseError:  # CONFIG renamed or refused
        policy = None
    return RedisInfo(
        version=str(info.get("redis_version", "?")),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        policy=policy,
        clock_offset=await clock.sync(redis),
    )


async def read_queues(
    connection: AbstractConnection, names: Iterable[str]
) -> dict[str, QueueState]:
    counts = await queue_counts(connection, names, timeout=TIMEOUT_S)
    states = {}
    for name in dict.fromkeys(names):
        main, dead = counts.get(name), counts.get(dead_letter_queue(name))
        states[name] = QueueState(
            name=name,
            exists=main is not None,
            ready=main[0] if main else 0,
            consumers=main[1] if main else 0,
            dead=dead[0] if dead else None,
        )
    return states


def broker_version(connection: AbstractConnection) -> str:
    props = connection.transport.connection.server_properties if connection.transport else {}
    product, version = props.get("product", "RabbitMQ"), props.get("version", "?")
    as_text = [v.decode() if isinstance(v, bytes) else str(v) for v in (product, version)]
    return " ".join(as_text)


async def take(settings: CommonSettings, queues: Iterable[str] = ()) -> Snapshot:
    """Read everything once. A server that cannot be reached is recorded, not raised: the other
    one is still worth reading."""
    snap = Snapshot(taken_at=time.time(), settings=settings)
    redis = make_redis(settings, max_connections=2)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            snap.redis = await read_redis(redis)
            keys = KeySpace(settings.REDIS_PREFIX)
            states = await read_models(redis, keys)
            hosts = await live_hosts(redis, keys, sorted({s.queue for s in states}))
        # Announcements carry Redis' time; ages are read against this host's (taken_at).
        offset = snap.redis.clock_offset
        snap.models = [
            ModelRow(
                s.model,
                s.queue,
                s.backend,
                s.live_workers,
                s.last_seen - offset,
                hosts=dict(sorted(hosts[s.queue].items())),
            )
            for s in sorted(states, key=lambda s: (s.queue, s.model))
        ]
    except (RedisError, OSError, TimeoutError) as e:
        snap.redis_error = describe(e)
    finally:
        await redis.aclose()

    try:
        async with asyncio.timeout(TIMEOUT_S):
            connection = await connect_broker(settings, name="ops-state", timeout=TIMEOUT_S)
    except (AMQPError, OSError, TimeoutError) as e:
        snap.broker_error = describe(e)
        return snap
    try:
        snap.broker_version = broker_version(connection)
        async with asyncio.timeout(TIMEOUT_S * 2):
            snap.queues = await read_queues(connection, [*(m.queue for m in snap.models), *queues])
        for m in snap.models:
            m.queue_state = snap.queues.get(m.queue)
    except (AMQPError, OSError, TimeoutError) as e:
        snap.broker_error = describe(e)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
    return snap
