"""The job service in-process on a real Redis and RabbitMQ, for an order of events that HTTP tests
cannot force: a worker whose answer lands after the broker's confirm failed but before the
backend withdrew the job. The job was accepted after all; its answer must reach the client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from services.backend.errors import BrokerUnavailable
from services.backend.job_service import JobService, _unsent
from services.backend.publisher import JobPublisher
from services.backend.routing import ModelRouter
from services.backend.waiter import ResultWaiter
from services.common.keys import KeySpace
from services.common.protocol import (
    ErrorCode,
    JobKind,
    JobMessage,
    JobOutcome,
    JobStatus,
    SamplingParams,
    TokenLogprob,
)
from services.common.registry import announce
from services.common.settings import CommonSettings
from services.common.store import Delta, ResultStore
from tools.local.servers import RabbitServer, RedisServer

ANSWER = "answered before the confirm failed"
# A loop per test: the router's Redis subscription of one test must not outlive it into another.
pytestmark = pytest.mark.asyncio(loop_scope="function")


class Refused(JobPublisher):
    """The broker's confirm fails (say it timed out), although the job reached a worker."""

    async def publish(
        self, queue: str, body: bytes, *, job_id: str, priority: int, expiration_s: float
    ) -> None:
        raise BrokerUnavailable("RabbitMQ did not confirm the job within 1 s; it was withdrawn")


class WorkerAnswersFirst(ResultStore):
    """That worker's answer lands just before the backend records the job as not accepted: the
    narrow window between the backend reading the job's progress and withdrawing it."""

    async def finish(
        self,
        outcome: JobOutcome,
        notify: str = "",
        *,
        job: JobMessage | None = None,
        started_at: float | None = None,
        end_stream: bool | None = None,
    ) -> bool:
        if outcome.code is ErrorCode.REJECTED and job is not None:
            answer = JobOutcome(job_id=outcome.job_id, status=JobStatus.COMPLETED, content=ANSWER)
            assert await super().finish(answer, job=job)  # as the worker writes it
        return await super().finish(
            outcome, notify, job=job, started_at=started_at, end_stream=end_stream
        )


@pytest_asyncio.fixture(loop_scope="function")
async def service(
    redis_server: RedisServer, rabbit_server: RabbitServer, prefix: str
) -> AsyncIterator[JobService]:
    settings = CommonSettings(
        RABBIT_MQ_PORT=rabbit_server.port, REDIS_PORT=redis_server.port, _env_file=None
    )
    redis = Redis(port=redis_server.port)
    keys = KeySpace(prefix)
    store = WorkerAnswersFirst(redis, keys, ttl=60)
    waiter = ResultWaiter(redis, store, keys.notify_channel("test"))
    router = ModelRouter(redis, keys, default_queue="q", refresh_s=60)
    await announce(redis, keys, worker_id="w", queue="q", names=["m"], backend="echo", ttl=30)
    publisher = await Refused.open(settings, timeout=5, name="test")
    await waiter.start()
    await router.start()
    try:
        yield JobService(router=router, publisher=publisher, store=store, waiter=waiter, timeout=30)
    finally:
        await router.close()
        await waiter.close()
        await publisher.close()
        await store.aclose()
        await redis.aclose()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_an_answer_that_beat_the_failed_confirm_stands(
    service: JobService, streamed: bool
) -> None:
    accepted = await service.accept(
        kind=JobKind.GENERATE, model="m", params=SamplingParams(), prompt="hi", stream=streamed
    )
    if streamed:
        got = [item async for item in service.stream(accepted, None)]
        assert got[:-1] == [Delta(ANSWER)]
        end = got[-1]
    else:
        end = await service.complete(accepted, None)
    assert isinstance(end, JobOutcome)
    assert (end.status, end.content) == (JobStatus.COMPLETED, ANSWER)


async def test_the_end_of_a_stream_fills_in_what_its_pieces_missed() -> None:
    """Pieces lost at the end (a Redis hiccup at the worker) come from the outcome: the text past
    what was sent, and the logprobs past those sent; a gap in the middle cannot be placed."""
    a, b, c = (TokenLogprob(token=t, logprob=-1.0) for t in ("a", " b", " c"))
    end = JobOutcome(job_id="j", status=JobStatus.COMPLETED, content="a b c", logprobs=[a, b, c])
    assert _unsent(end, [Delta("a", [a])]) == Delta(" b c", [b, c])
    assert _unsent(end, []) == Delta("a b c", [a, b, c])
    assert _unsent(end, [Delta("a b c", [a, b, c])]) is None
    assert _unsent(end, [Delta("a", [a]), Delta(" c", [c])]) is None
    plain = end.model_copy(update={"logprobs": None})
    assert _unsent(plain, [Delta("a")]) == Delta(" b c")
