"""OpenAI's API: `/v1/models`, `/v1/chat/completions`, `/v1/completions` (SSE with `stream`).

The same jobs, routing and errors as the original endpoints; a streamed answer is relayed from
the job's piece stream as the worker writes it. A client that disconnects cancels its job. `n`
choices are `n` jobs (services/backend/choices.py).
"""

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from services.backend import choices
from services.backend.api.headers import job_headers
from services.backend.deps import IdempotencyDep, JobServiceDep, require_api_key
from services.backend.errors import ApiError, openai_error
from services.backend.job_service import Idempotency, JobService
from services.backend.schemas.openai import (
    ChatCompletionRequest,
    ChunkMaker,
    CompletionRequest,
    answer,
)
from services.backend.schemas.responses import (
    MODELS_RESPONSES,
    ChatCompletion,
    TextCompletion,
    completion_responses,
)
from services.common.protocol import JobMessage, JobOutcome, JobStatus
from services.common.store import Delta

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_api_key)])


@router.get("/models", responses=MODELS_RESPONSES)
async def list_models(jobs: JobServiceDep) -> Response:
    """The models live workers serve, each of their names (aliases included) as its own entry."""
    now = int(time.time())
    data = [
        {
            "id": s.model,
            "object": "model",
            "created": now,
            "owned_by": "llm-wrap",
            "queue": s.queue,
            "max_model_len": s.max_model_len,
        }
        for s in jobs.router.live_models()
    ]
    return _json({"object": "list", "data": data})


@router.post("/chat/completions", responses=completion_responses(ChatCompletion))
async def chat_completions(
    body: ChatCompletionRequest, request: Request, jobs: JobServiceDep, key: IdempotencyDep
) -> Response:
    """A chat completion: OpenAI's body and answer; `stream: true` for server-sent events."""
    return await _serve(body, request, jobs, key)


@router.post("/completions", responses=completion_responses(TextCompletion))
async def completions(
    body: CompletionRequest, request: Request, jobs: JobServiceDep, key: IdempotencyDep
) -> Response:
    """A text completion from one prompt."""
    return await _serve(body, request, jobs, key)


def watch_disconnect(request: Request) -> asyncio.Task[None]:
    """A task that ends when the client disconnects (the body has been read by now, so the next
    ASGI message is the disconnect). Cancel it once the answer is sent."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return asyncio.create_task(wait())


async def _serve(
    body: ChatCompletionRequest | CompletionRequest,
    request: Request,
    jobs: JobService,
    key: Idempotency | None,
) -> Response:
    if body.n > 1:
        return await _serve_choices(body, request, jobs, key)
    accepted = await jobs.accept(**body.job(), stream=body.stream, idempotency=key)
    job = accepted.job
    gone = watch_disconnect(request)
    if not body.stream:
        try:
            outcome = await jobs.complete(accepted, body.priority, gone)
        finally:
            gone.cancel()
        return _json(
            answer(job.kind, job.job_id, body.model, int(job.created_at), [outcome]),
            headers=job_headers(job, outcome),
        )
    events = jobs.stream(accepted, body.priority, gone)
    try:
        # Errors before the first text (404 excepted, already raised) still get their status.
        first = await anext(events)
    except BaseException:
        gone.cancel()
        await events.aclose()
        raise
    maker = ChunkMaker(job, body.model, body.include_usage)
    return _event_stream(_sse([maker], [first], _One(events), gone), job)


async def _serve_choices(
    body: ChatCompletionRequest | CompletionRequest,
    request: Request,
    jobs: JobService,
    key: Idempotency | None,
) -> Response:
    """`n` > 1: a job per choice, answered together."""
    accepted = await choices.accept(jobs, body.job(), body.n, stream=body.stream, idempotency=key)
    first_job = accepted[0].job
    gone = watch_disconnect(request)
    if not body.stream:
        try:
            outcomes = await choices.complete(jobs, accepted, body.priority, gone)
        finally:
            gone.cancel()
        created = int(first_job.created_at)
        return _json(
            answer(first_job.kind, first_job.job_id, body.model, created, outcomes),
            headers=job_headers(first_job, outcomes[0]),
        )
    try:
        firsts, events = await choices.stream(jobs, accepted, body.priority, gone)
    except BaseException:
        gone.cancel()
        raise
    makers = [
        ChunkMaker(a.job, body.model, body.include_usage, index, first_job)
        for index, a in enumerate(accepted)
    ]
    return _event_stream(_sse(makers, firsts, events, gone), first_job)


def _event_stream(events: AsyncIterator[bytes], job: JobMessage) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Job-Id": job.job_id,
            "X-Job-Accepted-At": f"{job.created_at:.6f}",
        },
    )


def _event(data: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class Events(Protocol):
    """What `_sse` reads after the choices' first events: (choice, event) pairs; closing it
    stops the choices' jobs (cancelled where they still run)."""

    def __aiter__(self) -> AsyncIterator[tuple[int, Delta | JobOutcome]]: ...

    async def aclose(self) -> None: ...


class _One:
    """One choice's events, numbered as `_sse` reads them."""

    def __init__(self, events: AsyncGenerator[Delta | JobOutcome, None]) -> None:
        self._events = events

    def __aiter__(self) -> "_One":
        return self

    async def __anext__(self) -> tuple[int, Delta | JobOutcome]:
        return 0, await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()


async def _sse(
    makers: list[ChunkMaker],
    firsts: list[Delta | JobOutcome],
    events: Events,
    gone: asyncio.Task[None],
) -> AsyncIterator[bytes]:
    """OpenAI's chunk stream of one choice or several (each chunk names its `index`), from each
    choice's first event then the rest as they come, ending with one usage chunk for all (when
    asked) and `data: [DONE]`. An error after the first text is sent in-band as OpenAI's error
    body (the status line is long gone), and ends the stream (other choices are cancelled)."""

    async def all_events() -> AsyncIterator[tuple[int, Delta | JobOutcome]]:
        for index, first in enumerate(firsts):
            yield index, first
        async for event in events:
            yield event

    ended: list[JobOutcome] = []
    try:
        for maker in makers:
            if (opening := maker.first()) is not None:
                yield _event(opening)
        async for index, item in all_events():
            maker = makers[index]
            if isinstance(item, Delta):
                yield _event(maker.text(item.text, logprobs=item.logprobs))
            elif item.status is JobStatus.ERROR:
                yield _event(openai_error(item.error or "the model failed", 502, item.code))
                return
            else:
                ended.append(item)
                yield _event(maker.finishing(item))
        if makers[0].include_usage:
            yield _event(makers[0].usage(ended))
        yield b"data: [DONE]\n\n"
    except ApiError as e:
        yield _event(openai_error(e.message, e.status_code, e.code))
    finally:
        gone.cancel()
        await events.aclose()


def _json(body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)
