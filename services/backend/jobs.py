"""The request path: resolve the model's queue, record and publish the job, await its outcome."""

import asyncio
import logging
import time
import uuid

from redis.exceptions import RedisError

from services.backend.errors import JobTimedOut, ModelFailed, StoreUnavailable
from services.backend.metrics import JOB_SECONDS, JOBS
from services.backend.publisher import JobPublisher
from services.backend.routing import ModelRouter
from services.backend.waiter import ResultWaiter
from services.common.protocol import (
    DEFAULT_PRIORITY,
    ChatMessage,
    JobKind,
    JobMessage,
    JobOutcome,
    JobStatus,
    SamplingParams,
)
from services.common.store import ResultStore

log = logging.getLogger(__name__)


def _consume_exception(task: asyncio.Future[None]) -> None:
    """A late failure after the job was answered changes nothing; keep asyncio from warning."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("late failure after the job finished: %r", task.exception())


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
            raise ModelFailed(outcome.error or "the model failed")
        return outcome.content or ""

    async def _submit_and_wait(self, job: JobMessage, queue: str, priority: int | None) -> JobOutcome:
        future = self.waiter.expect(job.job_id)
        try:
            create = asyncio.ensure_future(self._create(job))
            publish = asyncio.ensure_future(
                self.publisher.publish(
                    queue,
                    job.model_dump_json().encode(),
                    job_id=job.job_id,
                    priority=DEFAULT_PRIORITY if priority is None else priority,
                    expiration_s=self.timeout,
                )
            )
            # RabbitMQ confirms a persistent message only once it is on disk or consumed and
            # acked; a fast worker's answer often arrives first, and then it is the proof of
            # acceptance: the request does not wait for the confirm.
            await asyncio.wait([publish, future], return_when=asyncio.FIRST_COMPLETED)
            if not future.done() or publish.done():
                await asyncio.wait([create, publish])
                await self._raise_if_not_accepted(job, create, publish)
            else:
                publish.add_done_callback(_consume_exception)
                create.add_done_callback(_consume_exception)
            try:
                return await asyncio.wait_for(future, timeout=max(0.0, job.deadline - time.time()))
            except TimeoutError:
                await self._fail_quietly(job.job_id, f"timed out after {self.timeout:g} s")
                raise JobTimedOut(
                    f"job {job.job_id} did not finish within {self.timeout:g} s"
                ) from None
        finally:
            self.waiter.forget(job.job_id)

    async def _raise_if_not_accepted(
        self, job: JobMessage, create: asyncio.Future[None], publish: asyncio.Future[None]
    ) -> None:
        """Raise the first failure of recording or publishing; mark the job failed if half-done."""
        for step in (publish, create):
            error = step.exception()
            if error is not None:
                if publish.exception() is None or create.exception() is None:
                    await self._fail_quietly(job.job_id, f"not accepted: {error!r}")
                raise error

    async def _create(self, job: JobMessage) -> None:
        try:
            await self.store.create(job)
        except (RedisError, OSError) as e:
            raise StoreUnavailable("Redis is unreachable") from e

    async def _fail_quietly(self, job_id: str, reason: str) -> None:
        """Mark a job failed so its record never stays pending; a lost write only costs the TTL."""
        try:
            await self.store.finish(JobOutcome(job_id=job_id, status=JobStatus.ERROR, error=reason))
        except (RedisError, OSError):
            log.warning("could not mark job %s failed (%s)", job_id, reason)
