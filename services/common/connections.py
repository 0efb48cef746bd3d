"""Connection factories and queue declaration, so both services talk to the broker and store alike.

One Redis pool and one robust AMQP connection per process; callers keep them on their app/worker
object and pass them down, never open one per request.
"""

import asyncio
import logging
from typing import Any

import aio_pika
import aiormq.connection
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection, AbstractRobustQueue
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.common.logs import describe
from services.common.protocol import MAX_PRIORITY
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

# aiormq queues outgoing frames for its writer task in a queue of 10: under load publishers
# (and acks) block on it and take turns with the writer, a wake-up per frame. A longer queue
# lets a loop turn's frames go out together: at 64 concurrent requests, measured A/B in the same
# run, +37 % req/s and a third less broker CPU per job. It adds no unbounded buffering: every
# frame belongs to a request or job in flight, which the prefetch and the HTTP concurrency bound.
aiormq.connection.Connection.FRAME_BUFFER_SIZE = 512


def make_redis(settings: CommonSettings, *, max_connections: int = 64) -> Redis:
    """A pooled async client that fails fast: a dead Redis must be a 503 within 2 s, not a hang."""
    return Redis(
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        password=settings.REDIS_PASSWORD,
        db=settings.REDIS_DB,
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 1),
        max_connections=max_connections,
        health_check_interval=30,
    )


async def connect_broker(
    settings: CommonSettings, *, name: str, timeout: float = 5.0, attempts: int = 1
) -> AbstractRobustConnection:
    """A robust connection: it reconnects and restores channels, queues and consumers by itself.

    The first connection is tried `attempts` times, a second apart: in compose the broker may
    still be starting when a service does.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await aio_pika.connect_robust(
                settings.amqp_url,
                timeout=timeout,
                client_properties={"connection_name": name},
            )
        except (OSError, ConnectionError, TimeoutError) as e:
            if attempt == attempts:
                raise
            log.warning("RabbitMQ not reachable yet (%s); retrying", describe(e))
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


def queue_arguments(max_length: int) -> dict[str, Any]:
    """Arguments every declaration of a model queue uses (a mismatch is a broker error).

    `reject-publish` makes a full queue nack new jobs, which the backend answers with 429
    instead of silently dropping the oldest job.
    """
    args: dict[str, Any] = {"x-max-priority": MAX_PRIORITY}
    if max_length > 0:
        args["x-max-length"] = max_length
        args["x-overflow"] = "reject-publish"
    return args


async def declare_model_queue(
    channel: AbstractRobustChannel, queue: str, *, max_length: int
) -> AbstractRobustQueue:
    """Declare a model's durable queue; the worker that serves it owns the declaration."""
    return await channel.declare_queue(queue, durable=True, arguments=queue_arguments(max_length))
