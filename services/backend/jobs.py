"""The request path: resolve the model's queue, record and publish the job, await its outcome."""

import asyncio
import functools
import logging
import os
import time

from redis.exceptions import RedisError

from services.backend.errors import ApiError, JobTimedOut, ModelFailed, StoreUnavailable
from services.backend.metrics import job_metrics
from services.backend.publisher import JobPublisher
from services.backend.routing import ModelRouter
from services.backend.waiter import ResultWaiter
from services.common.logs import describe
from services.common.protocol import (
    DEFAULT_PRIORITY,
    ChatMessage,
    ErrorCode,
    JobKind,
    JobMessage,
    JobOutcome,
    JobStatus,
    SamplingParams,
)
from services.common.store import MARK_AFTER_S, ResultStore

log = logging.getLogger(__name__)


class _DeadlineReached(Exception):
    """Set on a job's outcome future when its deadline passes first."""


def _expire(outcome: asyncio.Future[JobOutcome]) -> None:
    if not outcome.done():
        outcome.set_exception(_DeadlineReached())


def _published(outcome: asyncio.Future[JobOutcome], publish: asyncio.Future[None]) -> None:
    """A refused publish fails the waiting request; once the job is answered it changes nothing
    (the exception is still read, to keep asyncio quiet)."""
    if publish.cancelled() or (error := publish.exception()) is None:
        return
    if outcome.done():
        log.debug("late publish failure after the job finished: %s", describe(error))
    else:
        outcome.set_exception(error)


class JobService:
    def __init__(
        self,
        *,
        router: ModelRouter,
        publisher: JobPublisher,
        store: ResultStore,
        waiter: ResultWaiter,
        timeout: float,
    ) -> None:
        self.router = router
        self.publisher = publisher
        self.store = store
        self.waiter = waiter
        self.timeout = timeout
        self._background: set[asyncio.Task[None]] = set()

    async def run(
        self,
        *,
        kind: JobKind,
        model: str | None,
        params: SamplingParams,
        prompt: str | None = None,
        messages: list[ChatMessage] | None = None,
        priority: int | None = None,
        client_job_id: str | None = None,
        queue: str | None = None,
    ) -> str:
        """Run one job to its end and return the model's text, or raise a mapped ApiError."""
        target = await self.router.resolve(model, queue)
        now = time.time()
        # The server names every job: a client's job_id is kept for tracing, never trusted as
        # a key (the original let a reused id read another client's answer).
        # model_construct: every field comes from a validated request body or from here.
        job = JobMessage.model_construct(
            job_id=os.urandom(16).hex(),
            kind=kind,
            model=model or target,
            prompt=prompt,
            messages=messages,
            params=params,
            notify=self.waiter.channel,
            created_at=now,
            deadline=now + self.timeout,
            client_job_id=client_job_id,
        )
        started = time.perf_counter()
        outcome = await self._submit_and_wait(job, target, priority)
        seconds, outcomes = job_metrics(target)
        seconds.observe(time.perf_counter() - started)
        outcomes[outcome.status].inc()
        if outcome.status is JobStatus.ERROR:
            if outcome.code is ErrorCode.DEADLINE:
                # The worker saw the deadline first: still the client's 504, not a model error.
                raise JobTimedOut(self._timeout_detail(job, outcome.error))
            raise ModelFailed(outcome.error or "the model failed")
        return outcome.content or ""

    async def _submit_and_wait(
        self, job: JobMessage, queue: str, priority: int | None
    ) -> JobOutcome:
        """Publish the job and wait for whichever comes first: its outcome, a refused publish, or
        its deadline. All three land on the one future the waiter resolves (no `asyncio.wait`,
        no `wait_for` and their extra futures and loop turns on every request)."""
        if not self.waiter.subscribed.is_set():
            # Without the result subscription (Redis down) no answer could reach this request.
            raise StoreUnavailable("Redis is unreachable")
        outcome = self.waiter.expect(job.job_id)
        loop = asyncio.get_running_loop()
        mark = loop.call_later(MARK_AFTER_S, self._mark_pending, job)
        expire = loop.call_later(max(0.0, job.deadline - time.time()), _expire, outcome)
        publish = asyncio.ensure_future(
            self.publisher.publish(
                queue,
                job.model_dump_json().encode(),
                job_id=job.job_id,
                priority=DEFAULT_PRIORITY if priority is None else priority,
                expiration_s=self.timeout,
            )
        )
        # RabbitMQ confirms a persistent message once it is on disk, or consumed and acked;
        # a fast worker's answer often comes first, and is then the proof of acceptance.
        publish.add_done_callback(functools.partial(_published, outcome))
        try:
            return await outcome
        except _DeadlineReached:
            mark.cancel()
            await self._fail_quietly(job, f"timed out after {self.timeout:g} s", ErrorCode.DEADLINE)
            raise JobTimedOut(self._timeout_detail(job)) from None
        except ApiError as e:  # the broker refused the job (only the publish sets one)
            mark.cancel()
            await self._fail_quietly(job, f"not accepted: {e.detail}", ErrorCode.REJECTED)
            raise
        finally:
            mark.cancel()
            expire.cancel()
            self.waiter.forget(job.job_id)

    def _timeout_detail(self, job: JobMessage, why: str | None = None) -> str:
        detail = f"job {job.job_id} did not finish within {self.timeout:g} s"
        return f"{detail} ({why})" if why else detail

    def _mark_pending(self, job: JobMessage) -> None:
        """Record a job that is still waiting after MARK_AFTER_S (fast ones never need it)."""
        task = asyncio.ensure_future(self._create_quietly(job))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _create_quietly(self, job: JobMessage) -> None:
        try:
            await self.store.create(job)
        except (RedisError, OSError) as e:
            log.warning("could not record job %s as pending: %s", job.job_id, describe(e))

    async def _fail_quietly(self, job: JobMessage, reason: str, code: ErrorCode) -> None:
        """Mark a job failed so its record never stays pending; a lost write only costs the TTL."""
        outcome = JobOutcome(job_id=job.job_id, status=JobStatus.ERROR, error=reason, code=code)
        try:
            await self.store.finish(outcome, job=job)
        except (RedisError, OSError):
            log.warning("could not mark job %s failed (%s)", job.job_id, reason)
