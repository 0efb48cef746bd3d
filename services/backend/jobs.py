"""The request path: resolve the model's queue, record and publish the job, await its outcome."""

import asyncio
import logging
import time
import uuid

from redis.exceptions import RedisError

from services.backend.errors import ApiError, JobTimedOut, ModelFailed, StoreUnavailable
from services.backend.metrics import JOB_SECONDS, JOBS
from services.backend.publisher import JobPublisher
from services.backend.routing import ModelRouter
from services.backend.waiter import ResultWaiter
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


def _ignore_late_failure(task: asyncio.Future[None]) -> None:
    """A confirm that fails after the job was answered changes nothing; keep asyncio quiet."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("late publish failure after the job finished: %r", task.exception())


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
        job = JobMessage(
            job_id=uuid.uuid4().hex,
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
        JOB_SECONDS.labels(target).observe(time.perf_counter() - started)
        JOBS.labels(target, outcome.status.value).inc()
        if outcome.status is JobStatus.ERROR:
            if outcome.code is ErrorCode.DEADLINE:
                # The worker saw the deadline first: still the client's 504, not a model error.
                raise JobTimedOut(self._timeout_detail(job, outcome.error))
            raise ModelFailed(outcome.error or "the model failed")
        return outcome.content or ""

    async def _submit_and_wait(
        self, job: JobMessage, queue: str, priority: int | None
    ) -> JobOutcome:
        if not self.waiter.subscribed.is_set():
            # Without the result subscription (Redis down) no answer could reach this request.
            raise StoreUnavailable("Redis is unreachable")
        future = self.waiter.expect(job.job_id)
        loop = asyncio.get_running_loop()
        mark = loop.call_later(MARK_AFTER_S, self._mark_pending, job)
        try:
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
            await asyncio.wait([publish, future], return_when=asyncio.FIRST_COMPLETED)
            if publish.done():
                try:
                    publish.result()
                except ApiError as e:
                    mark.cancel()
                    await self._fail_quietly(job, f"not accepted: {e.detail}", ErrorCode.REJECTED)
                    raise
            else:
                publish.add_done_callback(_ignore_late_failure)
            try:
                return await asyncio.wait_for(future, timeout=max(0.0, job.deadline - time.time()))
            except TimeoutError:
                await self._fail_quietly(
                    job, f"timed out after {self.timeout:g} s", ErrorCode.DEADLINE
                )
                raise JobTimedOut(self._timeout_detail(job)) from None
        finally:
            mark.cancel()
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
            log.warning("could not record job %s as pending: %r", job.job_id, e)

    async def _fail_quietly(self, job: JobMessage, reason: str, code: ErrorCode) -> None:
        """Mark a job failed so its record never stays pending; a lost write only costs the TTL."""
        outcome = JobOutcome(job_id=job.job_id, status=JobStatus.ERROR, error=reason, code=code)
        try:
            await self.store.finish(outcome, job=job)
        except (RedisError, OSError):
            log.warning("could not mark job %s failed (%s)", job.job_id, reason)
