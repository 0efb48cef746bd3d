"""A request's `n` choices (OpenAI's `n`): one job each, answered together.

Each choice is a job of its own on the model's queue, so the choices run at once on whichever
workers hold them (vLLM's prefix cache makes the shared prompt cheap on one engine), and every
backend serves `n` without knowing of it. A seed given moves by one per choice (the same seed
would make every choice the same); without one, each choice samples on its own. The first
failure fails the request and cancels the other choices' jobs, as a client that goes away does.
"""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

from services.backend.errors import JobCancelled
from services.backend.job_service import Accepted, Idempotency, JobService
from services.common.protocol import INT64, JobOutcome, SamplingParams
from services.common.store import Delta

Event = Delta | JobOutcome


def _seeded(params: SamplingParams, index: int) -> SamplingParams:
    if params.seed is None or index == 0:
        return params
    seed = (params.seed + index + INT64) % (2 * INT64) - INT64  # within the seed's range
    return params.model_copy(update={"seed": seed})


def _key(idempotency: Idempotency | None, index: int) -> Idempotency | None:
    """Choice `index`'s own Idempotency-Key (the request's, numbered)."""
    if idempotency is None:
        return None
    return dataclasses.replace(idempotency, key_hash=f"{idempotency.key_hash}:{index}")


async def accept(
    jobs: JobService,
    fields: dict[str, Any],
    n: int,
    *,
    stream: bool,
    idempotency: Idempotency | None,
) -> list[Accepted]:
    """Name the `n` jobs (nothing is sent yet); 404 / 503 / 400 as for one. A choice refused
    frees the keys the ones before it claimed: none of them was sent."""
    accepted: list[Accepted] = []
    try:
        for index in range(n):
            params = _seeded(fields["params"], index)
            key = _key(idempotency, index)
            accepted.append(
                await jobs.accept(**{**fields, "params": params}, stream=stream, idempotency=key)
            )
    except BaseException:
        for earlier in accepted:
            await jobs.release(earlier)
        raise
    return accepted


def _stopper(gone: Awaitable[object]) -> asyncio.Future[None]:
    """A future that resolves when the client goes (`gone`) or a choice fails: handed to every
    choice's job as its `gone`, it cancels them all."""
    stop = asyncio.get_running_loop().create_future()
    asyncio.ensure_future(gone).add_done_callback(lambda _: _fire(stop))
    return stop


def _fire(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)


async def complete(
    jobs: JobService, accepted: list[Accepted], priority: int | None, gone: Awaitable[object]
) -> list[JobOutcome]:
    """Every choice's completed outcome, in order; the first failure is raised (the other
    choices' jobs cancelled)."""
    stop = _stopper(gone)
    tasks = [asyncio.ensure_future(jobs.complete(a, priority, stop)) for a in accepted]
    try:
        for done in asyncio.as_completed(tasks):
            await done
    except BaseException:
        _fire(stop)
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return [task.result() for task in tasks]


async def stream(
    jobs: JobService, accepted: list[Accepted], priority: int | None, gone: Awaitable[object]
) -> tuple[list[Event], "Merged"]:
    """Publish the choices' jobs; their first events (an error before any text is raised, as for
    one choice, with a status), then the rest as (choice, event) in the order they come. An
    error after the first text is an ApiError from the iterator; closing it cancels the jobs."""
    stop = _stopper(gone)
    streams = [jobs.stream(a, priority, stop) for a in accepted]
    firsts = await asyncio.gather(*(anext(s) for s in streams), return_exceptions=True)
    failed = [e for e in firsts if isinstance(e, BaseException)]
    if failed:
        _fire(stop)
        for s in streams:
            await s.aclose()
        # The choice that failed, not the ones cancelled because it did.
        raise next((e for e in failed if not isinstance(e, JobCancelled)), failed[0])
    return [e for e in firsts if not isinstance(e, BaseException)], Merged(streams, stop)


class Merged:
    """The choices' events after their first, as (choice, event) in the order they come (each
    choice's stream read by a task of its own from the start). Closing it, read to the end or
    not, stops what still runs: the other choices' jobs are cancelled."""

    def __init__(self, streams: list[AsyncGenerator[Event, None]], stop: asyncio.Future[None]):
        self._streams = streams
        self._stop = stop
        self._events: asyncio.Queue[tuple[int, Event | Exception | None]] = asyncio.Queue()
        self._pumps = [asyncio.ensure_future(self._pump(i, s)) for i, s in enumerate(streams)]
        self._running = len(streams)

    async def _pump(self, index: int, events: AsyncGenerator[Event, None]) -> None:
        try:
            async for event in events:
                await self._events.put((index, event))
        except Exception as e:  # raised to the reader (an ApiError: sent in-band)
            await self._events.put((index, e))
            return
        await self._events.put((index, None))

    def __aiter__(self) -> "Merged":
        return self

    async def __anext__(self) -> tuple[int, Event]:
        while self._running:
            index, event = await self._events.get()
            if event is None:
                self._running -= 1
            elif isinstance(event, Exception):
                raise event
            else:
                return index, event
        raise StopAsyncIteration

    async def aclose(self) -> None:
        _fire(self._stop)
        for task in self._pumps:
            task.cancel()
        for task in self._pumps:
            with contextlib.suppress(BaseException):
                await task
        for events in self._streams:
            await events.aclose()
