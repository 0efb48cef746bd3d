"""The result store on a real Redis: atomic transitions, first final write wins, pushed with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from services.common.keys import KeySpace
from services.common.protocol import (
    ErrorCode,
    JobKind,
    JobMessage,
    JobOutcome,
    JobStatus,
    TokenLogprob,
)
from services.common.store import PUSH_MAX_BYTES, Delta, ResultStore, parse_outcome
from tools.local.servers import RedisServer


@pytest.fixture
async def store(redis_server: RedisServer, prefix: str) -> AsyncIterator[ResultStore]:
    redis = Redis(port=redis_server.port)
    store = ResultStore(redis, KeySpace(prefix), ttl=60)
    yield store
    await store.aclose()
    await redis.aclose()


def _job(job_id: str = "j1") -> JobMessage:
    now = time.time()
    return JobMessage(
        job_id=job_id,
        kind=JobKind.GENERATE,
        model="m",
        prompt="p",
        notify="",
        created_at=now,
        deadline=now + 10,
    )


async def test_transitions_and_first_final_write_wins(store: ResultStore) -> None:
    await store.create(_job())
    assert (await store.get("j1"))["status"] == "pending"
    assert await store.start("j1") == (JobStatus.IN_PROGRESS, 1)
    done = JobOutcome(job_id="j1", status=JobStatus.COMPLETED, content="answer")
    assert await store.finish(done) is True
    late = JobOutcome(job_id="j1", status=JobStatus.ERROR, error="timed out")
    assert await store.finish(late) is False
    record = await store.get("j1")
    assert record["status"] == "completed" and record["content"] == "answer"
    assert "error" not in record
    # A redelivered duplicate is told the job is done instead of running it again.
    assert (await store.start("j1"))[0] is JobStatus.COMPLETED


async def test_pending_write_never_overwrites_a_finished_job(store: ResultStore) -> None:
    # The worker can finish before the backend's "pending" write lands.
    await store.finish(JobOutcome(job_id="j2", status=JobStatus.COMPLETED, content="fast"))
    await store.create(_job("j2"))
    assert (await store.get("j2"))["status"] == "completed"


async def test_finish_pushes_the_outcome_to_the_channel(store: ResultStore) -> None:
    pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("chan")
    outcome = JobOutcome(job_id="j3", status=JobStatus.COMPLETED, content="pushed")
    await store.finish(outcome, notify="chan")
    msg = await pubsub.get_message(timeout=2)
    while msg is None:
        msg = await asyncio.wait_for(pubsub.get_message(timeout=2), 3)
    assert parse_outcome(msg["data"]) == outcome
    await pubsub.aclose()


async def test_outcomes_reads_back_only_final_jobs(store: ResultStore) -> None:
    await store.create(_job("p"))
    await store.finish(JobOutcome(job_id="e", status=JobStatus.ERROR, error="boom"))
    found = await store.outcomes(["p", "e", "missing"])
    assert found == [JobOutcome(job_id="e", status=JobStatus.ERROR, error="boom")]


async def test_an_error_keeps_its_code_in_the_push_and_the_record(store: ResultStore) -> None:
    pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("chan-code")
    late = JobOutcome(job_id="d", status=JobStatus.ERROR, error="too slow", code=ErrorCode.DEADLINE)
    await store.finish(late, notify="chan-code")
    msg = await pubsub.get_message(timeout=2)
    while msg is None:
        msg = await asyncio.wait_for(pubsub.get_message(timeout=2), 3)
    assert parse_outcome(msg["data"]) == late
    assert await store.outcomes(["d"]) == [late]
    assert (await store.get("d"))["error_code"] == "deadline"
    await pubsub.aclose()


async def test_pieces_stream_ends_with_the_outcome_written_with_the_record(
    store: ResultStore, redis_server: RedisServer, prefix: str
) -> None:
    job = _job("s1").model_copy(update={"stream": True, "notify": f"{prefix}:n"})
    sub = Redis(port=redis_server.port).pubsub()
    await sub.subscribe(job.notify)
    await store.append("s1", "Hello", job.notify)
    await store.append("s1", " world", job.notify)
    cursor, texts, end = await store.read_pieces("s1")
    assert texts == [Delta("Hello"), Delta(" world")] and end is None
    # Reading on from the cursor gives nothing new until more is written.
    assert (await store.read_pieces("s1", cursor))[1:] == ([], None)
    done = JobOutcome(job_id="s1", status=JobStatus.COMPLETED, content="Hello world")
    assert await store.finish(done, job.notify, job=job)
    cursor2, texts, end = await store.read_pieces("s1", cursor)
    assert texts == [] and end is not None and end.content == "Hello world"
    # A late reader reads the whole answer from the start.
    _, texts, end = await store.read_pieces("s1")
    assert texts == [Delta("Hello"), Delta(" world")] and end is not None
    # Each piece nudged the waiting backend with the job id; the outcome was pushed as JSON.
    pushed = await _messages(sub, 3)
    assert pushed[:2] == [b"s1", b"s1"] and parse_outcome(pushed[2]).content == "Hello world"
    await sub.aclose()


async def test_a_streamed_job_failed_before_any_piece_still_ends_its_stream(
    store: ResultStore,
) -> None:
    job = _job("s2").model_copy(update={"stream": True})
    failed = JobOutcome(job_id="s2", status=JobStatus.ERROR, error="boom", code=ErrorCode.MODEL)
    assert await store.finish(failed, job=job)
    _, texts, end = await store.read_pieces("s2")
    assert texts == [] and end is not None and end.error == "boom"
    # A job that does not stream gets no stream at all.
    assert await store.finish(JobOutcome(job_id="s3", status=JobStatus.ERROR), job=_job("s3"))
    assert await store.read_pieces("s3") == (None, [], None)


async def test_cancel_fails_the_job_tells_workers_and_ends_a_started_stream(
    store: ResultStore, redis_server: RedisServer, prefix: str
) -> None:
    sub = Redis(port=redis_server.port).pubsub()
    await sub.subscribe(store.keys.cancel_channel)
    await store.append("c1", "partial")
    assert await store.cancel("c1") is True
    record = await store.get("c1")
    assert record["status"] == "error" and record["error_code"] == "cancelled"
    _, texts, end = await store.read_pieces("c1")
    assert texts == [Delta("partial")] and end is not None and end.code is ErrorCode.CANCELLED
    assert await _messages(sub, 1) == [b"c1"]
    # A finished job cannot be cancelled (and its answer stays).
    await store.finish(JobOutcome(job_id="c2", status=JobStatus.COMPLETED, content="done"))
    assert await store.cancel("c2") is False
    assert (await store.get("c2"))["status"] == "completed"
    await sub.aclose()


async def test_logprobs_travel_with_their_pieces_and_stay_with_the_answer(
    store: ResultStore, redis_server: RedisServer, prefix: str
) -> None:
    """Each piece's token logprobs ride in its stream entry; the whole list is in the record, the
    push, the sweep's read, and the record read of an answer too large to push."""
    hello = TokenLogprob(token="Hello", logprob=-0.25, top=[("Hello", -0.25), ("Hi", -1.5)])
    world = TokenLogprob(token=" world", logprob=-9999.0, top=[(" there", -0.5)])
    await store.append("l1", "Hello", "", [hello])
    await store.append("l1", " world", "", [world])
    await store.append("l1", "", "", [world])  # a token that made no text yet
    _, pieces, _ = await store.read_pieces("l1")
    assert pieces == [Delta("Hello", [hello]), Delta(" world", [world]), Delta("", [world])]

    done = JobOutcome(
        job_id="l1", status=JobStatus.COMPLETED, content="Hello world", logprobs=[hello, world]
    )
    sub = Redis(port=redis_server.port).pubsub()
    await sub.subscribe(f"{prefix}:l")
    assert await store.finish(done, f"{prefix}:l")
    assert parse_outcome((await _messages(sub, 1))[0]) == done
    assert await store.outcomes(["l1"]) == [done]
    assert await store.answer("l1") == ("Hello world", [hello, world])

    # Too large to push: the push says so and carries neither; the record has both.
    many = [hello] * (PUSH_MAX_BYTES // 40)
    big = JobOutcome(job_id="l2", status=JobStatus.COMPLETED, content="Hello", logprobs=many)
    assert await store.finish(big, f"{prefix}:l")
    pushed = parse_outcome((await _messages(sub, 1))[0])
    assert pushed.in_record and pushed.content is None and pushed.logprobs is None
    assert await store.answer("l2") == ("Hello", many)
    # A job that did not ask has none anywhere.
    await store.finish(JobOutcome(job_id="l3", status=JobStatus.COMPLETED, content="x"))
    assert await store.answer("l3") == ("x", None)
    assert (await store.outcomes(["l3"]))[0].logprobs is None
    await sub.aclose()


async def _messages(sub: PubSub, n: int) -> list[bytes]:
    """The next `n` messages' payloads (subscribe confirmations skipped), within 5 s."""
    found: list[bytes] = []
    async with asyncio.timeout(5):
        while len(found) < n:
            message = await sub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                found.append(message["data"])
    return found
