"""The worker's liveness: a Redis announcement for routing and a file for the container healthcheck.

Both are renewed only while the worker is really able to serve (broker connected, Redis answering),
so a stuck or cut-off worker drops out of routing and turns unhealthy by itself.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.keys import KeySpace
from services.common.logs import describe
from services.common.registry import announce, arrived, withdraw

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        redis: Redis,
        keys: KeySpace,
        *,
        worker_id: str,
        names: list[str],
        queue: str,
        backend: str,
        params: list[str],
        max_model_len: int | None,
        interval: float,
        ttl: float,
        file: str,
        healthy: Callable[[], bool],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.worker_id = worker_id
        self._names = names
        self._queue = queue
        self._backend = backend
        self._params = params
        self._max_model_len = max_model_len
        self._interval = interval
        self._ttl = ttl
        self._file = Path(file)
        self._healthy = healthy
        self._task: asyncio.Task[None] | None = None

    async def beat(self, touch: bool = True) -> bool:
        if not self._healthy():
            return False
        try:
            await announce(
                self._redis,
                self._keys,
                worker_id=self.worker_id,
                queue=self._queue,
                names=self._names,
                backend=self._backend,
                params=self._params,
                max_model_len=self._max_model_len,
                ttl=self._ttl,
            )
        except (RedisError, OSError) as e:
            log.warning("heartbeat failed: %s", describe(e))
            return False
        if touch:
            with contextlib.suppress(OSError):
                self._file.touch()
        return True

    async def start(self) -> None:
        # Announced, then the backends told, then healthy: once the container healthcheck (or a
        # test) sees the file, every backend routes to this worker.
        if await self.beat(touch=False):
            with contextlib.suppress(RedisError, OSError):
                await arrived(self._redis, self._keys, queue=self._queue)
            with contextlib.suppress(OSError):
                self._file.touch()
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.beat()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await withdraw(self._redis, self._keys, worker_id=self.worker_id, queue=self._queue)
        with contextlib.suppress(OSError):
            os.unlink(self._file)
