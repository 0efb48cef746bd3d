"""Connection factories and queue declaration, so both services talk to the broker and store alike.

One Redis pool and one robust AMQP connection per process; callers keep them on their app/worker
object and pass them down, never open one per request.

aiormq's outgoing frame queue is lengthened from 10 to 512 (`FRAME_BUFFER_SIZE`, patched at
import): with 64 requests in flight at zero model delay, publishers and acks blocked on the full
queue and took turns with the writer task. Without it, bench/ab.py at c=64 (2026-12-05): CPU per
answered request x1.21, req/s x0.78; at 20 ms x 64 tokens neutral (x1.00-1.01). It adds no
unbounded buffering: every frame belongs to a request or job in flight.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from typing import Any

import aio_pika
import aiormq.connection
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.common.logs import describe
from services.common.protocol import MAX_PRIORITY
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

aiormq.connection.Connection.FRAME_BUFFER_SIZE = 512


# Seconds between reconnection attempts once the broker went away.
RECONNECT_S = 0.5


def make_redis(settings: CommonSettings, *, max_connections: int = 64) -> Redis:
    """A pooled async client that fails fast: a dead Redis must be a 503 within 2 s, not a hang."""
    tls: dict[str, Any] = {}
    if settings.REDIS_TLS:  # the same checks as tls_context(): CA, hostname, client cert
        tls = {
            "ssl": True,
            "ssl_ca_certs": settings.TLS_CA_FILE or None,
            "ssl_certfile": settings.TLS_CERT_FILE or None,
            "ssl_keyfile": settings.TLS_KEY_FILE or None,
        }
    return Redis(
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        password=settings.redis_password,
        db=settings.REDIS_DB,
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 1),
        max_connections=max_connections,
        health_check_interval=30,
        **tls,
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
                ssl_context=settings.tls_context() if settings.RABBIT_MQ_TLS else None,
                timeout=timeout,
                client_properties={"connection_name": name},
                # aio-pika's default is 5 s: service would resume up to 5 s after the broker.
                reconnect_interval=RECONNECT_S,
            )
        except (OSError, ConnectionError, TimeoutError) as e:
            if attempt == attempts:
                raise
            log.warning("RabbitMQ not reachable yet (%s); retrying", describe(e))
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


# The dead-letter queue beside each model queue: jobs the worker rejected (malformed, out of
# tries) and jobs whose deadline passed while queued. Bounded, so a flood of either cannot fill
# the broker: the oldest are dropped first (`drop-head`) past DEAD_MAX_LENGTH jobs or
# DEAD_MAX_BYTES of bodies, and each is kept DEAD_TTL_MS (7 days).
DEAD_SUFFIX = ".dead"
DEAD_MAX_LENGTH = 10_000
DEAD_MAX_BYTES = 512 * 1024 * 1024
DEAD_TTL_MS = 7 * 24 * 3600 * 1000


def dead_letter_queue(queue: str) -> str:
    """The name of a model queue's dead-letter queue."""
    return queue + DEAD_SUFFIX


def queue_arguments(max_length: int, queue: str | None = None) -> dict[str, Any]:
    """Arguments every declaration of a model queue uses (a mismatch is a broker error).

    `reject-publish` makes a full queue nack new jobs, which the backend answers with 429
    instead of silently dropping the oldest job. With `queue`, rejected and expired jobs are
    dead-lettered (through the default exchange) to its dead-letter queue.
    """
    args: dict[str, Any] = {"x-max-priority": MAX_PRIORITY}
    if max_length > 0:
        args["x-max-length"] = max_length
        args["x-overflow"] = "reject-publish"
    if queue is not None:
        args["x-dead-letter-exchange"] = ""
        args["x-dead-letter-routing-key"] = dead_letter_queue(queue)
    return args


def dead_queue_arguments() -> dict[str, Any]:
    return {
        "x-max-length": DEAD_MAX_LENGTH,
        "x-max-length-bytes": DEAD_MAX_BYTES,
        "x-overflow": "drop-head",
        "x-message-ttl": DEAD_TTL_MS,
    }


async def queue_counts(
    connection: AbstractConnection, queues: Iterable[str], *, timeout: float
) -> dict[str, tuple[int, int]]:
    """(ready jobs, consumers) of each of `queues` and of its dead-letter queue (`<queue>.dead`),
    for those that exist; read with passive declares, which create nothing. A missing queue
    closes the channel it was asked on, so the next one gets a fresh channel. A queue that does
    not answer within `timeout` is left out; a broken connection raises (AMQPError, OSError)."""
    counts: dict[str, tuple[int, int]] = {}
    channel: AbstractChannel | None = None
    try:
        for queue in [n for q in dict.fromkeys(queues) for n in (q, dead_letter_queue(q))]:
            if channel is None or channel.is_closed:
                channel = await connection.channel(publisher_confirms=False)
            try:
                async with asyncio.timeout(timeout):
                    ok = (await channel.declare_queue(queue, passive=True)).declaration_result
            except (TimeoutError, aiormq.exceptions.ChannelNotFoundEntity) as e:
                log.debug("no counts for queue %s: %s", queue, describe(e))
                # Closed by the broker (not found) or holding a late reply: ask on a new one.
                if not channel.is_closed:
                    with contextlib.suppress(Exception):
                        await channel.close()
                channel = None
                continue
            counts[queue] = (ok.message_count or 0, ok.consumer_count or 0)
    finally:
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
    return counts


async def _arguments_match(
    channel: AbstractRobustChannel, queue: str, args: dict[str, Any]
) -> bool:
    """Whether `queue` can be declared with `args` (False: it exists with other arguments).

    Tried on a channel of its own: the broker answers a mismatch by closing the channel.
    """
    underlay = await channel.get_underlay_channel()
    probe = await underlay.connection.channel(publisher_confirms=False)
    try:
        await probe.queue_declare(queue, durable=True, arguments=args)
    except aiormq.exceptions.ChannelPreconditionFailed:
        return False
    finally:
        if not probe.is_closed:
            await probe.close()
    return True


async def _declare(
    channel: AbstractRobustChannel, queue: str, args: dict[str, Any]
) -> tuple[AbstractRobustQueue, bool]:
    """Declare a durable queue with `args`; one declared before with others is used as it is.

    Returns the queue and whether it has `args`.
    """
    if await _arguments_match(channel, queue, args):
        return await channel.declare_queue(queue, durable=True, arguments=args), True
    return await channel.declare_queue(queue, passive=True), False


async def declare_model_queue(
    channel: AbstractRobustChannel, queue: str, *, max_length: int
) -> AbstractRobustQueue:
    """Declare a model's durable queue and its dead-letter queue; the worker owns both.

    A queue declared by an older version (without dead-lettering) or with another
    QUEUE_MAX_LENGTH cannot be redeclared (RabbitMQ refuses other arguments): it is used as it is,
    with one warning, until an operator recreates it or sets a policy.
    """
    dead = dead_letter_queue(queue)
    _, dead_ok = await _declare(channel, dead, dead_queue_arguments())
    if not dead_ok:
        log.warning(
            "dead-letter queue %r exists with other arguments than %s; using it as it is",
            dead,
            dead_queue_arguments(),
        )
    declared, ok = await _declare(channel, queue, queue_arguments(max_length, queue))
    if not ok:
        log.warning(
            "queue %r exists with other arguments (declared by an older version, without "
            "dead-lettering, or with another QUEUE_MAX_LENGTH); using it as it is: jobs rejected "
            "or expired there are dropped, not dead-lettered to %r, unless a policy says so. "
            "Either recreate it (stop its workers, let it drain, `rabbitmqctl delete_queue %s`, "
            "start a worker) or add a policy: rabbitmqctl set_policy %s-dlx '^%s$' "
            '\'{"dead-letter-exchange":"","dead-letter-routing-key":"%s"}\' --apply-to queues',
            queue,
            dead,
            queue,
            queue,
            re.escape(queue),
            dead,
        )
    return declared
