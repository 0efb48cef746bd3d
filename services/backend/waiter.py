"""Waking requests when their job finishes: one Redis subscription per process, demultiplexed.

Each process subscribes once, at start-up, to its own channel, and every job names that channel, so
a worker's result (pushed in the same script that stores it) reaches exactly the waiting process.
A future is registered before the job is published, so an early result is never missed (the
original subscribed after checking, and lost wake-ups). After a dropped subscription, and
periodically for long waits, pending jobs are also read back from their stored record: a push lost
while disconnected costs a short delay, never the whole timeout.
"""

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.logs import describe
from services.common.protocol import JobOutcome
from services.common.redis_wire import WireParams, open_wire
from services.common.store import ResultStore, parse_outcome

log = logging.getLogger(__name__)

# The subscription's connection is checked with a PING this often (a half-open connection would
# otherwise never be noticed: a subscriber only reads).
HEALTH_CHECK_S = 30.0


class ResultWaiter:
    def __init__(
        self, redis: Redis, store: ResultStore, channel: str, sweep_s: float = 2.0
    ) -> None:
        self._redis = redis
        self._store = store
        self.channel = channel
        self._sweep_s = sweep_s
        # job id -> (its outcome, since when, the event its new pieces set: streamed jobs only)
        self._waiting: dict[
            str, tuple[asyncio.Future[JobOutcome], float, asyncio.Event | None]
        ] = {}
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._reading: set[asyncio.Future[None]] = set()
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="result-waiter")
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="result-sweeper")
        # Start-up waits briefly for the subscription; /ready reports it if Redis is down.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 2.0)

    def expect(
        self, job_id: str, pieces: asyncio.Event | None = None
    ) -> asyncio.Future[JobOutcome]:
        """Register interest in `job_id`; call before publishing the job.

        A streamed job passes `pieces`, set whenever the worker says new pieces are in the job's
        stream, and when its outcome arrives.
        """
        fut: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = (fut, time.monotonic(), pieces)
        return fut

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def _resolve(self, outcome: JobOutcome) -> None:
        entry = self._waiting.pop(outcome.job_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(outcome)
            if entry[2] is not None:
                entry[2].set()

    def _on_push(self, data: bytes) -> None:
        if data[:1] != b"{":  # a bare job id: new pieces in a streamed job's stream
            entry = self._waiting.get(data.decode(errors="replace"))
            if entry is not None and entry[2] is not None:
                entry[2].set()
            return
        try:
            outcome = parse_outcome(data)
        except ValueError:
            log.error("dropping malformed notification on %s", self.channel)
            return
        if outcome.in_record:
            task = asyncio.ensure_future(self._resolve_from_record(outcome))
            self._reading.add(task)
            task.add_done_callback(self._reading.discard)
        else:
            self._resolve(outcome)

    async def _resolve_from_record(self, outcome: JobOutcome) -> None:
        """A large answer: its push said where it is; on failure the sweep reads it later."""
        try:
            content, logprobs = await self._store.answer(outcome.job_id)
        except (RedisError, OSError) as e:
            log.warning("could not read job %s's answer: %s", outcome.job_id, describe(e))
            return
        update = {"content": content, "logprobs": logprobs, "in_record": False}
        self._resolve(outcome.model_copy(update=update))

    async def _listen(self) -> None:
        """Keep the subscription up: on a bare connection (`redis_wire`), each message handled
        as it is parsed, no reader task or message dict per push."""
        backoff = 0.1
        params = WireParams.of(self._redis)
        while True:
            wire = None
            try:
                wire = await open_wire(params, on_push=self._on_push)
                await wire.call("SUBSCRIBE", self.channel, timeout=params.connect_timeout)
                self.subscribed.set()
                backoff = 0.1
                # Anything published while we were not subscribed is read back from the store.
                await self._sweep(min_age=0.0)
                while True:
                    try:
                        async with asyncio.timeout(HEALTH_CHECK_S):
                            lost = await asyncio.shield(wire.closed)
                    except TimeoutError:
                        # Make sure the connection is still there.
                        await wire.call("PING", timeout=params.connect_timeout)
                        continue
                    raise lost
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                if self.subscribed.is_set():
                    log.warning("result subscription lost (%s); reconnecting", describe(e))
                self.subscribed.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if wire is not None:
                    wire.close()

    async def _sweep(self, min_age: float) -> None:
        now = time.monotonic()
        ids = [j for j, (_, since, _) in self._waiting.items() if now - since >= min_age]
        for outcome in await self._store.outcomes(ids):
            self._resolve(outcome)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_s)
            with contextlib.suppress(RedisError, OSError):
                await self._sweep(min_age=self._sweep_s)

    async def close(self) -> None:
        for task in (self._task, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for fut, _, _ in self._waiting.values():
            fut.cancel()
        self._waiting.clear()
