"""Which queue a request goes to, decided from workers' live announcements (kept in memory).

The view is refreshed in the background every `refresh_s`, and at once when a worker starts
serving or withdraws (it publishes on the registry channel): a request right after a model's last
worker left gets its 503 instead of waiting in a queue nobody reads, and one right after a worker
came up is routed to it. A miss also triggers one immediate refresh (rate-limited), should a
message be lost.
"""

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.backend.errors import BadRequest, NoLiveWorker, StoreUnavailable, UnknownModel
from services.common.keys import KeySpace
from services.common.logs import describe
from services.common.registry import ModelState, read_models

log = logging.getLogger(__name__)


class ModelRouter:
    def __init__(
        self, redis: Redis, keys: KeySpace, default_queue: str, refresh_s: float = 1.0
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.default_queue = default_queue
        self._refresh_s = refresh_s
        self._by_model: dict[str, ModelState] = {}
        self._live_by_queue: dict[str, int] = {}
        self._refreshed_at = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="model-router")

    async def refresh(self) -> None:
        states = await read_models(self._redis, self._keys)
        live: dict[str, int] = {}
        for s in states:
            live[s.queue] = max(live.get(s.queue, 0), s.live_workers)
        self._by_model = {s.model: s for s in states}
        self._live_by_queue = live
        self._refreshed_at = time.monotonic()

    async def _refresh_forever(self) -> None:
        """Refresh every `refresh_s`, or as soon as a worker arrives or withdraws."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._keys.registry_channel)
                    while True:
                        # Returns on a message, or empty-handed after refresh_s.
                        await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=self._refresh_s
                        )
                        await self.refresh()
            except (RedisError, OSError) as e:
                log.debug("model registry refresh failed: %s", describe(e))
                await asyncio.sleep(self._refresh_s)

    async def _refresh_on_miss(self) -> None:
        async with self._lock:
            if time.monotonic() - self._refreshed_at < 0.2:
                return
            try:
                await self.refresh()
            except (RedisError, OSError) as e:
                raise StoreUnavailable("Redis is unreachable") from e

    def live_models(self) -> list[ModelState]:
        """Every model name with a live worker, sorted by name."""
        return sorted((s for s in self._by_model.values() if s.live_workers), key=lambda s: s.model)

    @property
    def states(self) -> list[ModelState]:
        return list(self._by_model.values())

    @property
    def known_models(self) -> list[str]:
        return sorted(self._by_model)

    def _lookup(self, model: str | None, queue: str | None) -> str | None:
        """The queue to use, or None when the model (or the queue asked for) is unknown."""
        if queue is not None:
            known = queue == self.default_queue or queue in self._live_by_queue
            return queue if known else None
        if model is None:
            return self.default_queue
        state = self._by_model.get(model)
        if state is not None:
            return state.queue
        # A client may name the queue itself in meta.model (the original routed by queue name).
        if model == self.default_queue or model in self._live_by_queue:
            return model
        return None

    async def resolve(self, model: str | None, queue: str | None = None) -> str:
        """The queue for `model` (or an explicit queue); raises 404/503 errors, never waits long."""
        target = self._lookup(model, queue)
        if target is None or self._live_by_queue.get(target, 0) == 0:
            await self._refresh_on_miss()
            target = self._lookup(model, queue)
        if target is None and queue is not None:
            raise UnknownModel(f"queue {queue}", sorted(self._live_by_queue))
        if target is None:
            raise UnknownModel(str(model), self.known_models)
        if self._live_by_queue.get(target, 0) == 0:
            name = model or target
            raise NoLiveWorker(f"no live worker serves model {name!r} (queue {target!r})")
        return target

    def refuse_unhonoured(self, asked: list[str], model: str | None, queue: str) -> None:
        """400 for an optional sampling parameter (`asked`) the model's workers do not honour,
        as they announced it; a queue named directly is looked up by its models."""
        state = self._by_model.get(model) if model is not None else None
        if state is None:
            state = next((s for s in self._by_model.values() if s.queue == queue), None)
        honoured = state.params if state is not None else frozenset()
        for name in asked:
            if name not in honoured:
                served = f" (its workers run MODEL_BACKEND={state.backend})" if state else ""
                raise BadRequest(
                    f"{name} is not supported by model {model or queue!r}{served}", name
                )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
