"""`python -m tools.ops.deadletters`: list and replay a model queue's dead letters.

A model queue dead-letters (RabbitMQ's own dead-lettering, into `<queue>.dead`) the jobs a worker
rejected, with x-death reason `rejected` (a malformed message, a job out of tries), and the jobs
whose deadline passed while they waited, reason `expired`. Why a rejected job failed is in its
Redis record (`error`, `error_code`) while that lives (RESULT_TTL); `list` shows both, keyed by
the job id (the message's AMQP message_id).

    python -m tools.ops.deadletters list QUEUE [--reason R] [--limit N]
    python -m tools.ops.deadletters replay QUEUE (--job ID ... | --all) [--reason R] [--timeout S]

`replay` moves jobs back to the model queue: body and properties kept (priority, message id,
headers with their x-death history; not the user id, which the broker checks against the
replaying user), except that the job gets a fresh deadline, now + `--timeout`
(the body's `deadline` and the message's `expiration`), since a worker fails a job past its
deadline at once. Its Redis record is reset to `pending` (error, answer, timings and tries
cleared, the streamed pieces deleted) before it is published, so the re-run stores its outcome;
the client that waited got its error long ago, so the answer is read from the record (e.g.
`GET /v1/jobs/{id}`). A message that is not a job (no JSON object) is moved as it is. The jobs
not replayed stay in the dead-letter queue, in order. Settings as the services: RABBIT_MQ_*,
REDIS_*, REDIS_PREFIX and RESULT_TTL from the environment or `.env`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.connections import DEAD_SUFFIX, connect_broker, dead_letter_queue, make_redis
from services.common.keys import KeySpace
from services.common.logs import describe
from services.common.settings import CommonSettings

EXIT_PROBLEMS = 2
DEFAULT_TIMEOUT_S = 300.0
# What a replay clears from a job's record: its outcome and its run.
_OUTCOME_FIELDS = (
    "content",
    "error",
    "error_code",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "started_at",
    "finished_at",
    "tries",
)


@dataclass
class DeadLetter:
    """One message of a dead-letter queue, with why and when it was dead-lettered."""

    message: AbstractIncomingMessage
    job_id: str
    reason: str
    count: int
    at: dt.datetime | None
    source: str

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        deaths = (message.headers or {}).get("x-death")
        first = deaths[0] if isinstance(deaths, list) and deaths else None
        last: dict[str, Any] = first if isinstance(first, dict) else {}
        at = last.get("time")
        return cls(
            message=message,
            job_id=message.message_id or _body_job_id(message.body) or "-",
            reason=str(last.get("reason", "?")),
            count=int(last.get("count", 0) or 0),
            at=at if isinstance(at, dt.datetime) else None,
            source=str(last.get("queue", "?")),
        )


def _body_job_id(body: bytes) -> str | None:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return str(raw["job_id"]) if isinstance(raw, dict) and "job_id" in raw else None


async def _take(channel: AbstractChannel, dead: str) -> AsyncIterator[DeadLetter]:
    """The dead letters one by one, taken unacked: those not acked go back, in order, when the
    channel closes."""
    queue = await channel.declare_queue(dead, passive=True)
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        yield DeadLetter.of(message)


def _when(at: dt.datetime | None) -> str:
    if at is None:
        return "?"
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def list_dead(
    settings: CommonSettings, queue: str, *, reason: str | None = None, limit: int = 1000
) -> list[tuple[DeadLetter, dict[str, str]]]:
    """The dead letters of `queue` (up to `limit`), each with its job's record (empty if gone)."""
    keys = KeySpace(settings.REDIS_PREFIX)
    connection = await connect_broker(settings, name="ops-deadletters")
    redis = make_redis(settings)
    try:
        channel = await connection.channel()
        letters: list[DeadLetter] = []
        async for letter in _take(channel, dead_letter_queue(queue)):
            if reason is None or letter.reason == reason:
                letters.append(letter)
                if len(letters) >= limit:
                    break
        await channel.close()  # nothing acked: every letter stays
        records = await _records(redis, keys, [d.job_id for d in letters])
        return list(zip(letters, records, strict=True))
    finally:
        await redis.aclose()
        await connection.close()


async def _records(redis: Redis, keys: KeySpace, job_ids: list[str]) -> list[dict[str, str]]:
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        rows = await pipe.execute()
    return [{k.decode(): v.decode(errors="replace") for k, v in row.items()} for row in rows]


def _fresh(message: AbstractIncomingMessage, timeout: float) -> aio_pika.Message:
    """The job again, as it was published, with a deadline `timeout` from now."""
    body = message.body
    expiration: float | None = None
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raw = None
    if isinstance(raw, dict):
        raw["deadline"] = time.time() + timeout
        body = orjson.dumps(raw)
        expiration = timeout
    return aio_pika.Message(
        body,
        headers=message.headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=message.delivery_mode or aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=expiration,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


async def _reopen(redis: Redis, keys: KeySpace, job_id: str, ttl: int) -> None:
    """Make the job's record pending again, so that its re-run can store an outcome."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.job(job_id), *_OUTCOME_FIELDS)
        pipe.hset(keys.job(job_id), "status", "pending")
        pipe.expire(keys.job(job_id), ttl)
        pipe.delete(keys.pieces(job_id))
        await pipe.execute()


async def replay(
    settings: CommonSettings,
    queue: str,
    *,
    job_ids: Sequence[str] = (),
    everything: bool = False,
    reason: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[str]:
    """Move the chosen dead letters back to `queue`; returns the ids of the jobs replayed."""
    keys = KeySpace(settings.REDIS_PREFIX)
    wanted = set(job_ids)
    connection = await connect_broker(settings, name="ops-deadletters")
    redis = make_redis(settings)
    replayed: list[str] = []
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.declare_queue(queue, passive=True)  # a replay needs somewhere to go
        async for letter in _take(channel, dead_letter_queue(queue)):
            if not (everything or letter.job_id in wanted):
                continue
            if reason is not None and letter.reason != reason:
                continue
            if letter.job_id != "-":
                await _reopen(redis, keys, letter.job_id, settings.RESULT_TTL)
            await channel.default_exchange.publish(
                _fresh(letter.message, timeout), routing_key=queue, mandatory=True
            )
            await letter.message.ack()  # only once the broker has confirmed the replay
            replayed.append(letter.job_id)
        await channel.close()  # the letters not replayed go back to the dead-letter queue
    finally:
        await redis.aclose()
        await connection.close()
    return replayed


def _queue_name(name: str) -> str:
    """A model queue's name, also when given its dead-letter queue's."""
    return name.removesuffix(DEAD_SUFFIX)


def _describe_record(record: dict[str, str]) -> str:
    if not record:
        return "no record (expired from Redis, or never made)"
    status = record.get("status", "?")
    if status != "error":
        return status
    return f"error [{record.get('error_code', '?')}] {record.get('error', '')}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.ops.deadletters",
        description="List and replay the jobs a model queue dead-lettered (QUEUE.dead).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the dead jobs: why and when, and their recorded error")
    ls.add_argument("queue", metavar="QUEUE", help="the model queue (QUEUE_NAME)")
    ls.add_argument("--reason", choices=["rejected", "expired"], help="only these")
    ls.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    rp = sub.add_parser("replay", help="move dead jobs back to the model queue, to run again")
    rp.add_argument("queue", metavar="QUEUE", help="the model queue (QUEUE_NAME)")
    which = rp.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", action="append", default=[], metavar="ID", help="this job")
    which.add_argument("--all", action="store_true", help="every dead job")
    rp.add_argument("--reason", choices=["rejected", "expired"], help="only these")
    rp.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds the replayed job has to finish (its new deadline; {DEFAULT_TIMEOUT_S:g})",
    )
    return parser


async def _main(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    queue = _queue_name(args.queue)
    out = sys.stdout
    if args.command == "list":
        rows = await list_dead(settings, queue, reason=args.reason, limit=args.limit)
        out.write(f"{len(rows)} dead job(s) in {dead_letter_queue(queue)}\n")
        for letter, record in rows:
            out.write(
                f"{letter.job_id}  {letter.reason} x{letter.count} at {_when(letter.at)} "
                f"from {letter.source}  {_describe_record(record)}\n"
            )
        return 0
    done = await replay(
        settings,
        queue,
        job_ids=args.job,
        everything=args.all,
        reason=args.reason,
        timeout=args.timeout,
    )
    for job_id in done:
        out.write(f"replayed {job_id}\n")
    missing = sorted(set(args.job) - set(done))
    for job_id in missing:
        sys.stderr.write(f"{job_id}: not in {dead_letter_queue(queue)}\n")
    out.write(f"{len(done)} job(s) replayed to {queue}\n")
    return EXIT_PROBLEMS if missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except ChannelNotFoundEntity as e:
        sys.stderr.write(f"no such queue: {describe(e)}\n")
    except (AMQPError, OSError, RedisError, TimeoutError) as e:
        sys.stderr.write(f"broker or result store unreachable: {describe(e)}\n")
    return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
