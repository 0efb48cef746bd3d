"""Hearing about cancelled jobs: one subscription per worker to the cancel channel.

A cancel names a job id. A running job is stopped at once (its generation is interrupted, so the
model stops spending on it); a queued one is remembered, and skipped when this worker takes it.
The job's record was already made final by whoever cancelled it (store.cancel), so a worker that
missed the message only wastes the work: its late answer is not stored.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.keys import KeySpace
from services.common.logs import describe

log = logging.getLogger(__name__)

# Cancelled ids remembered for queued jobs; the oldest are forgotten first.
REMEMBER = 100_000


class CancelListener:
    def __init__(self, redis: Redis, keys: KeySpace, on_cancel: Callable[[str], None]) -> None:
        self._redis = redis
        self._channel = keys.cancel_channel
        self._on_cancel = on_cancel
        self._cancelled: dict[str, None] = {}
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._cancelled

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="cancel-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 2.0)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self.subscribed.set()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None and message["type"] == "message":
                            self._cancel(message["data"].decode())
            except (RedisError, OSError) as e:
                self.subscribed.clear()
                log.warning("cancel subscription lost (%s); reconnecting", describe(e))
                await asyncio.sleep(1.0)

    def _cancel(self, job_id: str) -> None:
        self._cancelled[job_id] = None
        if len(self._cancelled) > REMEMBER:
            del self._cancelled[next(iter(self._cancelled))]
        self._on_cancel(job_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
