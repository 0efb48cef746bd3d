"""Automatic pipelining on one dedicated connection: the per-job Redis writes of the hot path.

Commands queue up while a batch is on the wire and leave together when it is answered: at low
load nothing waits (a command goes on the next loop turn, with whatever else that turn sent), and
under load the batches grow by themselves to fill the round trip: one write and one read for
dozens of jobs. (Flushing every loop turn gave batches of about two commands at 1,400 jobs/s.)
The connection is a bare one (`redis_wire`), not a redis-py Pipeline checked out of the pool per
batch: A/B in one run at c=64, req/s x1.24, CPU per request backend x0.86, worker x0.81.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.redis_wire import Arg, Wire, WireParams, encode_command, open_wire


class AutoPipeline:
    """Pipelined commands on one connection of its own, made with the client's settings."""

    def __init__(self, redis: Redis, max_batch: int = 512) -> None:
        self._params = WireParams.of(redis)
        self._max_batch = max_batch
        self._queued: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._wire: Wire | None = None
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0  # writes sent (for tests and benchmarks)

    def submit(self, *args: Arg) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply (bytes, int, list...) or its error."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((encode_command(args), fut))
        if self._runner is None:
            # Starts on the next loop turn, so everything submitted in this one goes with it.
            self._runner = asyncio.create_task(self._run())
        return fut

    async def _run(self) -> None:
        """Send what is queued, one batch on the wire at a time, until nothing is left."""
        try:
            while self._queued:
                batch = self._queued[: self._max_batch]
                del self._queued[: self._max_batch]
                try:
                    await self._send(batch)
                except Exception as e:  # no connection; or a bug: fail loudly, nobody hangs
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    if not isinstance(e, ConnectionError):
                        raise
        except BaseException:  # cancelled (shutdown): nobody may wait forever on what is queued
            queued, self._queued = self._queued, []
            for _, fut in queued:
                if not fut.done():
                    fut.set_exception(ConnectionError("the pipeline was shut down"))
            raise
        finally:
            self._runner = None

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        """Write the batch and wait until all of it is answered (or the connection fails)."""
        if self._wire is None or not self._wire.alive:
            self._wire = await open_wire(self._params)
        wire = self._wire
        wire.send(b"".join(data for data, _ in batch), [fut for _, fut in batch])
        self.batches += 1
        try:
            # Replies come in order, and a dropped connection fails them all: the batch is done
            # when its last future is (without raising that caller's error here).
            async with asyncio.timeout(self._params.reply_timeout):
                await asyncio.wait([batch[-1][1]])
        except TimeoutError:
            timeout = self._params.reply_timeout
            wire.fail(RedisTimeoutError(f"Redis did not answer within {timeout:g} s"))

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._wire is not None:
            self._wire.close()
        self._wire = None
