"""The request path: resolve the model's queue, record and publish the job, then await it.

Three ways to await a job, one per kind of client: `complete` (its outcome: the original
endpoints and OpenAI's non-streamed answers), `stream` (its pieces as the worker writes them, then
its outcome: OpenAI's `stream: true`) and `enqueue` (nobody waits: `/v1/jobs`, read back later).
`cancel` stops a job wherever it is: still queued (skipped when taken) or running (aborted).
"""

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError
from redis.exceptions import RedisError

from services.backend.errors import (
    ApiError,
    BrokerUnavailable,
    InvalidInput,
    JobCancelled,
    JobTimedOut,
    ModelFailed,
    StoreUnavailable,
)
from services.backend.metrics import queue_metrics
from services.backend.publisher import JobPublisher
from services.backend.routing import ModelRouter
from services.backend.waiter import ResultWaiter
from services.common import clock
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
from services.common.store import MARK_AFTER_S, Delta, ResultStore

log = logging.getLogger(__name__)

# A streamed request reads its job's stream at least this often, nudged or not.
POLL_S = 1.0


class _DeadlineReached(Exception):
    """Set on a job's outcome future when its deadline passes first."""


class _ClientGone(Exception):
    """Set on a job's outcome future when the client that waits for it disconnects."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A job and the queue it goes to, once its model resolved (404/503 raised before this)."""

    job: JobMessage
    queue: str
    body: bytes  # the job message as published (serialised once, before anything is sent)
    # The request's Idempotency-Key (hashed), and whether an earlier request holds it: then
    # `job` names that request's job, which this one awaits instead of running the model again.
    idempotency: str | None = None
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An `Idempotency-Key` header, hashed with the caller's API key (keys are per client), and
    the hash of the request it came with (the same key with another body is refused)."""

    key_hash: str
    body_hash: str


def _expire(outcome: asyncio.Future[JobOutcome]) -> None:
    if not outcome.done():
        outcome.set_exception(_DeadlineReached())


def _abandon(outcome: asyncio.Future[JobOutcome]) -> None:
    if not outcome.done():
        outcome.set_exception(_ClientGone())


def _published(outcome: asyncio.Future[JobOutcome], publish: asyncio.Future[None]) -> None:
    """A refused publish fails the waiting request; once the job is answered it changes nothing
    (the exception is still read, to keep asyncio quiet)."""
    if publish.cancelled() or (error := publish.exception()) is None:
        return
    if outcome.done():
        log.debug("late publish failure after the job finished: %s", describe(error))
    else:
        outcome.set_exception(error)


def _unsent(end: JobOutcome, sent: list[Delta]) -> Delta | None:
    """What the full answer holds beyond the pieces already streamed: pieces lost on the way
    (a Redis hiccup at the worker), or all of it when none came."""
    whole, so_far = end.content or "", "".join(piece.text for piece in sent)
    if not whole.startswith(so_far):
        return None  # a piece lost in the middle: what follows it cannot be placed
    text = whole[len(so_far) :]
    logprobs = None
    if end.logprobs is not None:
        logprobs = end.logprobs[sum(len(piece.logprobs or ()) for piece in sent) :]
    return Delta(text, logprobs) if text or logprobs else None


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

    async def accept(
        self,
        *,
        kind: JobKind,
        model: str | None,
        params: SamplingParams,
        prompt: str | None = None,
        messages: list[ChatMessage] | None = None,
        client_job_id: str | None = None,
        queue: str | None = None,
        stream: bool = False,
        notify: bool = True,
        idempotency: Idempotency | None = None,
    ) -> Accepted:
        """Resolve the model's queue (404/503 now) and name the job; nothing is sent yet.

        With an Idempotency-Key already used, the job is the first request's (422 if that
        request had another body)."""
        if not self.publisher.ready:
            # Said first: with the broker down, workers' heartbeats lapse too, and "no live
            # worker" would send the operator the wrong way.
            raise BrokerUnavailable("RabbitMQ is unreachable")
        target = await self.router.resolve(model, queue)
        if asked := params.optional_asked():
            self.router.refuse_unhonoured(asked, model, target)
        now = clock.now()
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
            notify=self.waiter.channel if notify else "",
            stream=stream,
            created_at=now,
            deadline=now + self.timeout,
            client_job_id=client_job_id,
        )
        try:
            body = job.model_dump_json().encode()
        except PydanticSerializationError:
            # JSON lets a body carry lone UTF-16 surrogates ("\ud800"); no UTF-8 text holds them.
            raise InvalidInput("the request holds text that is not valid Unicode") from None
        if idempotency is None:
            return Accepted(job, target, body)
        try:
            taken = await self.store.claim(idempotency.key_hash, job.job_id, idempotency.body_hash)
        except (RedisError, OSError) as e:
            raise StoreUnavailable("Redis is unreachable") from e
        if taken is None:
            return Accepted(job, target, body, idempotency.key_hash)
        first_job, first_body = taken
        if first_body != idempotency.body_hash:
            raise InvalidInput("this Idempotency-Key was used with another request body")
        log.info("job %s: a repeat with the same Idempotency-Key", first_job)
        job = job.model_copy(update={"job_id": first_job})
        return Accepted(job, target, body, idempotency.key_hash, repeat=True)

    async def _repeat(self, accepted: Accepted) -> JobOutcome:
        """The outcome of the first request's job, read from its record (the first request may
        be waiting in another process: its pushes go there)."""
        job = accepted.job
        delay = 0.02
        while True:
            try:
                found = await self.store.outcomes([job.job_id])
            except (RedisError, OSError) as e:
                raise StoreUnavailable("Redis is unreachable") from e
            if found:
                return found[0]
            if clock.now() > job.deadline:
                raise JobTimedOut(self._timeout_detail(job))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def release(self, accepted: Accepted) -> None:
        """The job was not accepted: its Idempotency-Key may be used again."""
        if accepted.idempotency is not None and not accepted.repeat:
            with contextlib.suppress(RedisError, OSError):
                await self.store.release(accepted.idempotency)

    async def complete(
        self, accepted: Accepted, priority: int | None, gone: Awaitable[object] | None = None
    ) -> JobOutcome:
        """Publish the job and wait for its completed outcome, or raise a mapped ApiError.

        `gone` resolves when the client disconnects: the job is then cancelled.
        """
        job, queue = accepted.job, accepted.queue
        if accepted.repeat:
            outcome = await self._repeat(accepted)
            if outcome.status is JobStatus.ERROR:
                raise self._failure(job, outcome)
            return outcome
        started = time.perf_counter()
        outcome = await self._submit_and_wait(accepted, priority, gone)
        metrics = queue_metrics(queue)
        metrics.seconds.observe(time.perf_counter() - started)
        self._observe(job, queue, outcome)
        if outcome.status is JobStatus.ERROR:
            raise self._failure(job, outcome)
        return outcome

    def _failure(self, job: JobMessage, outcome: JobOutcome) -> ApiError:
        if outcome.code is ErrorCode.DEADLINE:
            # The worker saw the deadline first: still the client's 504, not a model error.
            return JobTimedOut(self._timeout_detail(job, outcome.error))
        if outcome.code is ErrorCode.CANCELLED:
            return JobCancelled(f"job {job.job_id} was cancelled")
        if outcome.code is ErrorCode.INVALID:
            return InvalidInput(outcome.error or "the model cannot run this request")
        return ModelFailed(outcome.error or "the model failed")

    @staticmethod
    def _observe(job: JobMessage, queue: str, outcome: JobOutcome) -> None:
        metrics = queue_metrics(queue)
        metrics.outcomes[outcome.status].inc()
        if outcome.started_at is not None:
            metrics.queued.observe(max(0.0, outcome.started_at - job.created_at))
            if outcome.finished_at is not None:
                metrics.run.observe(max(0.0, outcome.finished_at - outcome.started_at))
        if outcome.prompt_tokens:
            metrics.prompt_tokens.inc(outcome.prompt_tokens)
        if outcome.completion_tokens:
            metrics.output_tokens.inc(outcome.completion_tokens)

    def _publish(self, accepted: Accepted, priority: int | None) -> asyncio.Future[None]:
        job = accepted.job
        return asyncio.ensure_future(
            self.publisher.publish(
                accepted.queue,
                accepted.body,
                job_id=job.job_id,
                priority=DEFAULT_PRIORITY if priority is None else priority,
                expiration_s=self.timeout,
            )
        )

    async def _submit_and_wait(
        self, accepted: Accepted, priority: int | None, gone: Awaitable[object] | None = None
    ) -> JobOutcome:
        """Publish the job and wait for whichever comes first: its outcome, a refused publish, or
        its deadline. All three land on the one future the waiter resolves (no `asyncio.wait`,
        no `wait_for` and their extra futures and loop turns on every request)."""
        job = accepted.job
        if not self.waiter.subscribed.is_set():
            # Without the result subscription (Redis down) no answer could reach this request.
            raise StoreUnavailable("Redis is unreachable")
        outcome = self.waiter.expect(job.job_id)
        loop = asyncio.get_running_loop()
        mark = loop.call_later(MARK_AFTER_S, self._mark_pending, job)
        expire = loop.call_later(max(0.0, job.deadline - clock.now()), _expire, outcome)
        publish = self._publish(accepted, priority)
        # RabbitMQ confirms a persistent message once it is on disk, or consumed and acked;
        # a fast worker's answer often comes first, and is then the proof of acceptance.
        publish.add_done_callback(functools.partial(_published, outcome))
        if gone is not None:
            asyncio.ensure_future(gone).add_done_callback(lambda _: _abandon(outcome))
        try:
            return await outcome
        except _DeadlineReached:
            mark.cancel()
            await self._fail_quietly(job, f"timed out after {self.timeout:g} s", ErrorCode.DEADLINE)
            raise JobTimedOut(self._timeout_detail(job)) from None
        except _ClientGone:
            mark.cancel()
            self._cancel_in_background(job.job_id, "the client disconnected")
            raise JobCancelled(f"job {job.job_id}: the client disconnected") from None
        except ApiError as e:  # the broker refused the job (only the publish sets one)
            mark.cancel()
            if await self._withdraw(accepted, e):
                raise
            return await self._repeat(accepted)  # answered before the confirm failed: it stands
        finally:
            mark.cancel()
            expire.cancel()
            self.waiter.forget(job.job_id)

    async def stream(
        self, accepted: Accepted, priority: int | None, gone: Awaitable[object] | None = None
    ) -> AsyncGenerator[Delta | JobOutcome, None]:
        """Publish a streamed job, then yield its pieces as the worker writes them, and last its
        completed outcome. An error before the first text raises (the route can still answer
        with a status); after it, a failed outcome is yielded for the route to report in-band.

        Pieces are read from the job's stream when the worker nudges (and every POLL_S anyway:
        a lost nudge costs a delay, never the answer). Closing the iterator before the end (the
        client went away) cancels the job.
        """
        job, queue = accepted.job, accepted.queue
        if accepted.repeat:  # the first request streams it; this one gets the whole answer
            first = await self._repeat(accepted)
            if first.status is JobStatus.ERROR:
                raise self._failure(job, first)
            if (whole := _unsent(first, [])) is not None:
                yield whole
            yield first
            return
        if not self.waiter.subscribed.is_set():
            raise StoreUnavailable("Redis is unreachable")
        nudged = asyncio.Event()
        outcome = self.waiter.expect(job.job_id, nudged)
        loop = asyncio.get_running_loop()
        accepted_at = time.perf_counter()
        mark = loop.call_later(MARK_AFTER_S, self._mark_pending, job)
        expire = loop.call_later(max(0.0, job.deadline - clock.now()), _expire, outcome)
        publish = self._publish(accepted, priority)
        publish.add_done_callback(functools.partial(_published, outcome))
        if gone is not None:
            asyncio.ensure_future(gone).add_done_callback(lambda _: _abandon(outcome))
        outcome.add_done_callback(lambda _: nudged.set())
        metrics = queue_metrics(queue)
        sent: list[Delta] = []
        cursor: str | None = None
        finished = False
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await nudged.wait()
                nudged.clear()
                cursor, pieces, end = await self.store.read_pieces(job.job_id, cursor)
                if end is None and outcome.done():
                    # Final without an `end` entry: failed before the job reached a worker
                    # (refused, timed out, client gone) or cancelled by someone else.
                    if outcome.exception() is None:
                        # Nothing more will be written: read what is there, then end with it.
                        cursor, more, end = await self.store.read_pieces(job.job_id, cursor)
                        pieces += more
                        end = end or outcome.result()
                    else:
                        outcome.result()  # raises the mapped error (handled below)
                for piece in pieces:
                    if not sent:
                        metrics.first_token.observe(time.perf_counter() - accepted_at)
                    sent.append(piece)
                    yield piece
                if end is None:
                    continue
                finished = True
                metrics.seconds.observe(time.perf_counter() - accepted_at)
                self._observe(job, queue, end)
                if end.status is JobStatus.ERROR:
                    error = self._failure(job, end)
                    if not sent:
                        raise error
                    yield end
                    return
                if (rest := _unsent(end, sent)) is not None:
                    yield rest
                yield end
                return
        except _DeadlineReached:
            finished = True
            await self._fail_quietly(job, f"timed out after {self.timeout:g} s", ErrorCode.DEADLINE)
            raise JobTimedOut(self._timeout_detail(job)) from None
        except _ClientGone:
            raise JobCancelled(f"job {job.job_id}: the client disconnected") from None
        except ApiError as e:
            if isinstance(e, JobCancelled | JobTimedOut | ModelFailed):
                raise
            finished = True  # the broker refused the job
            if await self._withdraw(accepted, e):
                raise
            # A worker answered before the broker's confirm failed: the job was accepted after
            # all, and its answer stands (as for the non-streamed path).
            end = await self._repeat(accepted)
            self._observe(job, queue, end)
            if end.status is JobStatus.ERROR:
                if not sent:
                    raise self._failure(job, end) from None
                yield end
                return
            if (rest := _unsent(end, sent)) is not None:
                yield rest
            yield end
        finally:
            mark.cancel()
            expire.cancel()
            self.waiter.forget(job.job_id)
            if not outcome.done():
                # Ended from the stream before the outcome came: nobody will await it, and a
                # later _abandon/_expire exception left in it logs "never retrieved".
                outcome.cancel()
            if not finished:
                # Closed early (the client went away) or failed: stop the model working for
                # nobody.
                self._cancel_in_background(job.job_id, "the client disconnected")

    async def enqueue(self, accepted: Accepted, priority: int | None) -> None:
        """Record the job, then publish it and wait for the broker's confirm (an async job has
        no waiter: the record is how anyone learns about it)."""
        if accepted.repeat:
            return
        await self._create_or_fail(accepted.job)
        try:
            await self._publish(accepted, priority)
        except ApiError as e:
            if await self._withdraw(accepted, e):
                raise
            # Already answered: a worker took it before the broker's confirm came (or timed out).

    async def cancel(self, job_id: str, reason: str = "cancelled by the client") -> bool:
        """Cancel a job; False when it had already finished."""
        try:
            return await self.store.cancel(job_id, reason)
        except (RedisError, OSError) as e:
            raise StoreUnavailable("Redis is unreachable") from e

    def _cancel_in_background(self, job_id: str, reason: str) -> None:
        async def cancel() -> None:
            try:
                if await self.store.cancel(job_id, reason):
                    log.info("job %s cancelled: %s", job_id, reason)
            except (RedisError, OSError) as e:
                log.warning("could not cancel job %s: %s", job_id, describe(e))

        self._spawn(cancel())

    def _timeout_detail(self, job: JobMessage, why: str | None = None) -> str:
        detail = f"job {job.job_id} did not finish within {self.timeout:g} s"
        return f"{detail} ({why})" if why else detail

    def _mark_pending(self, job: JobMessage) -> None:
        """Record a job that is still waiting after MARK_AFTER_S (fast ones never need it)."""
        self._spawn(self._create_quietly(job))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _create_or_fail(self, job: JobMessage) -> None:
        try:
            await self.store.create(job)
        except (RedisError, OSError) as e:
            raise StoreUnavailable("Redis is unreachable") from e

    async def _create_quietly(self, job: JobMessage) -> None:
        try:
            await self.store.create(job)
        except (RedisError, OSError) as e:
            log.warning("could not record job %s as pending: %s", job.job_id, describe(e))

    async def _fail_quietly(self, job: JobMessage, reason: str, code: ErrorCode) -> bool:
        """Mark a job failed so its record never stays pending; a lost write only costs the TTL.
        False when the job had already finished (its outcome stands)."""
        outcome = JobOutcome(job_id=job.job_id, status=JobStatus.ERROR, error=reason, code=code)
        try:
            return await self.store.finish(outcome, job=job)
        except (RedisError, OSError):
            log.warning("could not mark job %s failed (%s)", job.job_id, reason)
            return True

    async def _withdraw(self, accepted: Accepted, error: ApiError) -> bool:
        """A job whose publish failed: failed for good, so a copy that reaches a worker is
        skipped, and its idempotency key freed for a retry. A publish that timed out or lost
        its connection may still have reached the queue, even a worker: those are told to stop
        it. False when the job had already finished (a worker answered before the broker's
        confirm was in): then it was accepted after all, and its outcome stands."""
        job = accepted.job
        if not await self._fail_quietly(job, f"not accepted: {error.detail}", ErrorCode.REJECTED):
            return False
        if isinstance(error, BrokerUnavailable):
            try:
                await self.store.stop_workers(job.job_id)
            except (RedisError, OSError) as e:
                log.warning("could not tell workers to drop job %s: %s", job.job_id, describe(e))
        await self.release(accepted)
        return True
