"""The job loop: take jobs from the model's queue, run them, store every outcome, then ack.

Guarantees: every job taken ends in a stored outcome (success, model error,
deadline, bad payload, too many tries), written before the ack and shielded from cancellation, so
a crash at any point means redelivery, never a lost job; a job started `JOB_MAX_TRIES` times is
failed rather than retried forever. While Redis is unreachable the worker holds its jobs and retries
the write instead of requeueing them in a tight loop (the original spun at 10k requeues).

Dead letters: a job that cannot be run (malformed, out of tries) is rejected instead of acked once
its error is stored (the waiting client gets it at once), and RabbitMQ moves it to the queue's
dead-letter queue (`<queue>.dead`, see `declare_model_queue`), where
`python -m tools.ops.deadletters` lists and replays it. Jobs whose deadline passed in the queue
land there too, dead-lettered by the broker (x-death reason `expired`).

Tries are counted before a job runs, whatever its speed, without a write for the common fast job:
a first delivery is marked only if still running after MARK_AFTER_S, and a redelivery with no try
on record counts that unmarked first start as well (`ResultStore.start(redelivered=True)`). So a
job that kills its worker at once runs at most JOB_MAX_TRIES times. A job that was prefetched but
never started by a worker that died counts a try it did not use (one of JOB_MAX_TRIES).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common import clock, heap
from services.common.connections import connect_broker, declare_model_queue, make_redis
from services.common.keys import KeySpace
from services.common.logs import describe
from services.common.protocol import (
    FINAL_STATUSES,
    ErrorCode,
    JobMessage,
    JobOutcome,
    JobStatus,
)
from services.common.registry import worker_id
from services.common.store import MARK_AFTER_S, ResultStore
from services.worker.acks import AckBatcher
from services.worker.cancels import CancelListener
from services.worker.config import WorkerSettings
from services.worker.heartbeat import Heartbeat
from services.worker.metrics import WorkerMetrics
from services.worker.models import (
    GenerationRequest,
    InvalidRequest,
    ModelBackend,
    ModelDead,
    ModelError,
)
from services.worker.models.base import Answer, Generation
from services.worker.pieces import PieceWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

STORE_RETRY_S = 120.0
# Jobs a worker holds at once when neither WORKER_CONCURRENCY nor the model says.
DEFAULT_CONCURRENCY = 16
# How often the worker asks the model whether it can still serve (vLLM: engine process alive).
MODEL_CHECK_S = 0.5


class Worker:
    def __init__(self, settings: WorkerSettings, model: ModelBackend) -> None:
        self.settings = settings
        self.model = model
        self.worker_id = worker_id(settings.MODEL_NAME, settings.WORKER_HOST)
        self.metrics = WorkerMetrics(
            settings.QUEUE_NAME, self.worker_id, settings.MODEL_BACKEND.value
        )
        self.keys = KeySpace(settings.REDIS_PREFIX)
        # The store's job writes go over its own pipelined connection; the pool serves the rest.
        self.redis: Redis = make_redis(settings)
        self.store = ResultStore(self.redis, self.keys, settings.RESULT_TTL)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractRobustQueue | None = None
        self._consumer_tag: str | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # The deadline scope of each running job: a cancel moves its deadline to now.
        self._running: dict[str, asyncio.Timeout] = {}
        self.cancels = CancelListener(self.redis, self.keys, self._stop_job)
        # Jobs held at once: known once the model has loaded (its capacity), set in start().
        self.concurrency = 0
        self.acks = AckBatcher()
        self._stopping = False
        # Set with the reason when the model can no longer serve; `python -m services.worker`
        # then exits non-zero and the jobs this worker held go back to the queue.
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._watchdog: asyncio.Task[None] | None = None
        self.heartbeat = Heartbeat(
            self.redis,
            self.keys,
            worker_id=self.worker_id,
            names=settings.model_names,
            queue=settings.QUEUE_NAME,
            backend=settings.MODEL_BACKEND.value,
            params=sorted(model.params),
            max_model_len=model.context,
            interval=settings.HEARTBEAT_INTERVAL,
            ttl=settings.HEARTBEAT_TTL,
            file=settings.HEARTBEAT_FILE,
            healthy=self._broker_ok,
        )

    def _broker_ok(self) -> bool:
        c, ch = self._connection, self._channel
        broker = c is not None and c.connected.is_set() and ch is not None and not ch.is_closed
        return broker and not self.failed.done()

    async def start(self) -> None:
        """Load the model, then connect and consume; announce only once able to serve."""
        s = self.settings
        log.info("loading model %r (backend %s)", s.MODEL_NAME, s.MODEL_BACKEND.value)
        started = time.perf_counter()
        await self.model.load()
        log.info("model loaded in %.1f s", time.perf_counter() - started)
        # One worker holds as many jobs as its model runs at once, unless told otherwise.
        self.concurrency = s.WORKER_CONCURRENCY or self.model.capacity or DEFAULT_CONCURRENCY
        self.acks.prefetch = self.concurrency
        self.metrics.capacity.set(self.concurrency)
        self._watchdog = asyncio.create_task(self._watch_model(), name="model-watchdog")
        self._connection = await connect_broker(
            self.settings, name=f"worker-{self.worker_id}", attempts=60
        )
        self._channel = await self._connection.channel()
        assert self._channel is not None
        await self._channel.set_qos(prefetch_count=self.concurrency)
        self._queue = await declare_model_queue(
            self._channel, s.QUEUE_NAME, max_length=s.QUEUE_MAX_LENGTH
        )
        await self._check_clock()
        await self.cancels.start()
        heap.settle()  # start-up is done (model loaded, broker connected): before serving
        self._consumer_tag = await self._queue.consume(self._on_message)
        await self.heartbeat.start()
        log.info(
            "worker %s serving model %r on queue %r (concurrency %d)",
            self.worker_id,
            s.MODEL_NAME,
            s.QUEUE_NAME,
            self.concurrency,
        )

    async def _check_clock(self) -> None:
        try:
            offset = await clock.sync(self.redis)
        except (RedisError, OSError) as e:
            log.warning("could not compare this host's clock with Redis': %s", describe(e))
            return
        if abs(offset) > clock.WARN_S:
            log.warning(
                "this host's clock is %.1f s %s Redis': jobs are timed on Redis' clock, but "
                "this host's logs and tools are not; sync the clocks (NTP, e.g. chrony)",
                abs(offset),
                "behind" if offset > 0 else "ahead of",
            )

    async def _watch_model(self) -> None:
        # Polled: the engine shows its death as state (vLLM's `errored`), not as an event.
        while (reason := self.model.failure()) is None:  # noqa: ASYNC110
            await asyncio.sleep(MODEL_CHECK_S)
        self._fail(reason)

    def _stop_job(self, job_id: str) -> None:
        """A cancel for a job this worker runs: end its generation now."""
        scope = self._running.get(job_id)
        if scope is not None:
            scope.reschedule(asyncio.get_running_loop().time())

    def _fail(self, reason: str) -> None:
        if not self.failed.done():
            log.error("the model can no longer serve: %s", reason)
            self.failed.set_result(reason)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        self.acks.received(message)
        self.metrics.held.inc()
        try:
            await self._handle(message)
        finally:
            self._inflight.discard(task)
            self.metrics.held.dec()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            job = JobMessage.model_validate_json(message.body)
        except ValidationError as e:
            await self._reject_malformed(message, e)
            return
        taken_at = clock.now()
        outcome: JobOutcome | None
        if message.redelivered:
            # Only a redelivered job can be a duplicate or a retry: check before running it.
            status, tries = await self._store_retrying(
                lambda: self.store.start(job.job_id, redelivered=True)
            )
            if status in FINAL_STATUSES:
                log.info("job %s already %s; dropping the duplicate", job.job_id, status.value)
                self.acks.ack(message)
                return
            if tries > self.settings.JOB_MAX_TRIES:
                outcome = self._error(
                    job,
                    f"gave up after {tries - 1} tries (the worker kept dying)",
                    ErrorCode.REJECTED,
                )
                await asyncio.shield(self._finish(job, outcome, message, taken_at, dead=True))
                return
            log.info("job %s started again (model %s, try %d)", job.job_id, job.model, tries)
            outcome = await self._run(job)
            if outcome is None:
                return
        else:
            # A first delivery is marked in_progress only if it is still running after
            # MARK_AFTER_S; the final write records when it started either way.
            log.info("job %s started (model %s)", job.job_id, job.model)
            marks: list[asyncio.Future[tuple[JobStatus, int]]] = []
            timer = asyncio.get_running_loop().call_later(
                MARK_AFTER_S,
                lambda: marks.append(
                    asyncio.ensure_future(
                        self._store_retrying(lambda: self.store.start(job.job_id))
                    )
                ),
            )
            try:
                outcome = await self._run(job)
            finally:
                timer.cancel()
                if marks:  # the mark must land before the final write
                    await asyncio.wait(marks)
            if outcome is None:
                return
        # Store, then ack: shielded, so a shutdown cannot cut between the two.
        await asyncio.shield(self._finish(job, outcome, message, taken_at))

    async def _run(self, job: JobMessage) -> JobOutcome | None:
        """The job's outcome; None when the model died under it (the job stays unacked, so it
        goes back to the queue when the worker exits)."""
        remaining = job.deadline - clock.now()
        if remaining <= 0:
            return self._error(
                job, "expired in the queue before a worker could take it", ErrorCode.DEADLINE
            )
        request = GenerationRequest(
            kind=job.kind, params=job.params, prompt=job.prompt, messages=job.messages
        )
        started_at = clock.now()
        try:
            # asyncio.timeout, not wait_for: no extra task per job on the hot path. A cancel
            # reschedules it to now (`_stop_job`).
            async with asyncio.timeout(remaining) as scope:
                self._running[job.job_id] = scope
                if job.job_id in self.cancels:
                    return self._error(job, "cancelled before it started", ErrorCode.CANCELLED)
                if job.stream:
                    answer = await self._stream(job, request)
                else:
                    answer = await self.model.generate(request)
        except ModelDead as e:
            self._fail(str(e))
            return None
        except TimeoutError:
            if job.job_id in self.cancels:
                log.info("job %s cancelled: generation stopped", job.job_id)
                return self._error(job, "cancelled by the client", ErrorCode.CANCELLED)
            return self._error(
                job, "the model did not finish before the job's deadline", ErrorCode.DEADLINE
            )
        except InvalidRequest as e:
            log.info("job %s: refused by the model: %s", job.job_id, e)
            return self._error(job, str(e), ErrorCode.INVALID)
        except ModelError as e:
            log.warning("job %s: model error: %s (%s)", job.job_id, e, e.detail or "no detail")
            return self._error(job, str(e), ErrorCode.MODEL)
        except Exception:
            # The client reads a message that says nothing internal; the log has the rest.
            log.exception("job %s: model raised", job.job_id)
            return self._error(job, "the model failed on this request", ErrorCode.MODEL)
        finally:
            self._running.pop(job.job_id, None)
        return JobOutcome(
            job_id=job.job_id,
            status=JobStatus.COMPLETED,
            content=answer.text,
            finish_reason=answer.finish_reason,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            logprobs=answer.logprobs,
            started_at=started_at,
            finished_at=clock.now(),
        )

    async def _stream(self, job: JobMessage, request: GenerationRequest) -> Generation:
        """Generate while writing the pieces to the job's stream as they come."""
        writer = PieceWriter(self.store, job.job_id, job.notify)
        answer = Answer(request)
        try:
            # aclosing: an interrupted stream is closed here, so the model stops generating.
            async with contextlib.aclosing(self.model.stream(request)) as pieces:
                async for piece in pieces:
                    writer.add(piece.text, piece.logprobs)
                    answer.add(piece)
            await writer.flush()
        finally:
            writer.abandon()
        return answer.whole()

    @staticmethod
    def _error(job: JobMessage, reason: str, code: ErrorCode) -> JobOutcome:
        return JobOutcome(job_id=job.job_id, status=JobStatus.ERROR, error=reason, code=code)

    async def _finish(
        self,
        job: JobMessage,
        outcome: JobOutcome,
        message: AbstractIncomingMessage,
        taken_at: float,
        *,
        dead: bool = False,
    ) -> None:
        """Store the outcome, then ack (or, `dead`, reject to the dead-letter queue)."""
        try:
            kept = await self._store_retrying(
                lambda: self.store.finish(outcome, job.notify, job=job, started_at=taken_at)
            )
        except (RedisError, OSError):
            log.error("job %s: result store unreachable; handing the job back", job.job_id)
            await self.acks.nack(message, requeue=True)
            return
        self.metrics.stored(outcome, kept)
        if dead:
            await self._dead_letter(message)
            log.info("job %s %s (dead-lettered)", job.job_id, outcome.status.value)
            return
        self.acks.ack(message)
        log.info("job %s %s", job.job_id, outcome.status.value)

    async def _dead_letter(self, message: AbstractIncomingMessage) -> None:
        """Reject: the broker moves the job to the queue's dead-letter queue."""
        # A dead channel: the broker requeues the job. Malformed, it is rejected again; out of
        # tries, it is then found failed and dropped as a duplicate (its error stays on record).
        with contextlib.suppress(Exception):
            await self.acks.nack(message, requeue=False)

    async def _reject_malformed(
        self, message: AbstractIncomingMessage, err: ValidationError
    ) -> None:
        """A message we cannot parse is failed (if it names a job) and dead-lettered, never
        requeued."""
        log.error("malformed job message %s: %s", message.message_id, err.errors()[:3])
        try:
            raw = orjson.loads(message.body)
            job_id, notify = str(raw["job_id"]), str(raw.get("notify", ""))
        except (ValueError, KeyError, TypeError):
            await self._dead_letter(message)
            return
        outcome = JobOutcome(
            job_id=job_id,
            status=JobStatus.ERROR,
            error=f"malformed job message: {err.errors()[:1]}",
            code=ErrorCode.REJECTED,
        )
        with contextlib.suppress(RedisError, OSError):
            kept = await self._store_retrying(lambda: self.store.finish(outcome, notify))
            self.metrics.stored(outcome, kept)
        await self._dead_letter(message)

    async def _store_retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run a store operation, waiting out a Redis outage (up to STORE_RETRY_S)."""
        deadline = time.monotonic() + STORE_RETRY_S
        delay = 0.2
        while True:
            try:
                return await op()
            except (RedisError, OSError) as e:
                if time.monotonic() > deadline:
                    raise
                log.warning("result store unreachable (%s); retrying in %.1f s", describe(e), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        """Stop taking jobs, let running ones finish (up to DRAIN_TIMEOUT), then disconnect.

        Jobs still running after the drain time are handed back to the queue by the broker when
        the channel closes.
        """
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._queue is not None and self._consumer_tag is not None:
            # Bounded: with the broker gone, a cancel would wait for a reconnect.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._consumer_tag), 5)
        await self.heartbeat.stop()
        await self.cancels.stop()
        if self._inflight:
            log.info("draining %d job(s)", len(self._inflight))
            # A dead model finishes nothing more: its jobs go straight back to the queue.
            drain = 0 if self.failed.done() else self.settings.DRAIN_TIMEOUT
            _, pending = await asyncio.wait(set(self._inflight), timeout=drain)
            for task in pending:
                task.cancel()
        await self.acks.flush()  # before the channel closes, or finished jobs would run again
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)
        await self.model.close()
        await self.store.aclose()
        await self.redis.aclose()
        log.info("worker %s stopped", self.worker_id)
