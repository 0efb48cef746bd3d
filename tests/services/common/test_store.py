"""The result store on a real Redis: atomic transitions, first final write wins, pushed with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.common.keys import KeySpace
from services.common.protocol import ErrorCode, JobKind, JobMessage, JobOutcome, JobStatus
from services.common.store import ResultStore, parse_outcome
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
