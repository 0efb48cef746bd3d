"""Async jobs: submit a chat or completion body (202 + id), poll it, cancel it.

Nobody waits on the connection: the job's record in Redis is its state, kept for RESULT_TTL
after it finishes. Job ids are 128-bit random, so knowing one is what grants reading it.
"""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from redis.exceptions import RedisError

from services.backend.deps import IdempotencyDep, JobServiceDep, require_api_key
from services.backend.errors import BadRequest, JobNotFound, StoreUnavailable
from services.backend.schemas.openai import answer, parse_job_request
from services.backend.schemas.responses import (
    JOB_CANCEL_RESPONSES,
    JOB_STATUS_RESPONSES,
    JOB_SUBMIT_RESPONSES,
)
from services.common import clock
from services.common.protocol import ErrorCode, FinishReason, JobKind, JobOutcome, JobStatus
from services.common.store import parse_logprobs

router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[Depends(require_api_key)])

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ChatCompletionRequest"},
                        {"$ref": "#/components/schemas/CompletionRequest"},
                    ]
                }
            }
        },
    }
}


@router.post("/jobs", status_code=202, responses=JOB_SUBMIT_RESPONSES, openapi_extra=_BODY_DOC)
async def submit(
    body: Annotated[dict[str, Any], Body()], jobs: JobServiceDep, key: IdempotencyDep
) -> Response:
    """Queue a chat (`messages`) or completion (`prompt`) body; answers 202 with the job id."""
    try:
        request = parse_job_request(body)
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
        ) from None
    if request.stream:
        raise BadRequest("an async job is read back with GET /v1/jobs/{id}: no stream", "stream")
    if request.n > 1:
        raise BadRequest("an async job is one choice: submit one job per choice", "n")
    accepted = await jobs.accept(**request.job(), notify=False, idempotency=key)
    await jobs.enqueue(accepted, request.priority)
    job = accepted.job
    view = {
        "id": job.job_id,
        "object": "job",
        "status": JobStatus.PENDING.value,
        "model": job.model,
        "created_at": job.created_at,
    }
    return Response(
        orjson.dumps(view),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/jobs/{job.job_id}"},
    )


@router.get("/jobs/{job_id}", responses=JOB_STATUS_RESPONSES)
async def status(job_id: str, jobs: JobServiceDep) -> Response:
    """Status, timestamps, the wait so far, and the answer (OpenAI's body) or the error."""
    return _json(_view(job_id, await _record(jobs, job_id)))


@router.delete("/jobs/{job_id}", responses=JOB_CANCEL_RESPONSES)
async def cancel(job_id: str, jobs: JobServiceDep) -> Response:
    """Cancel: a queued job is skipped by its worker, a running one is stopped in the model.
    A job that already finished is left as it is (409); cancelling twice is not an error."""
    record = await _record(jobs, job_id)
    if await jobs.cancel(job_id):
        record = await _record(jobs, job_id)
    view = _view(job_id, record)
    if view["status"] != "cancelled":
        return _json(
            {
                "error": {
                    "message": f"job {job_id} already {view['status']}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "job_finished",
                }
            },
            409,
        )
    return _json(view)


async def _record(jobs: JobServiceDep, job_id: str) -> dict[str, str]:
    try:
        record = await jobs.store.get(job_id)
    except (RedisError, OSError) as e:
        raise StoreUnavailable("Redis is unreachable") from e
    if not record:
        raise JobNotFound(f"no job {job_id!r} (unknown, or expired after its result TTL)")
    return record


def _number(record: dict[str, str], name: str) -> float | None:
    value = record.get(name)
    return float(value) if value else None


def _view(job_id: str, record: dict[str, str]) -> dict[str, Any]:
    state = record.get("status", JobStatus.PENDING.value)
    if state == JobStatus.ERROR and record.get("error_code") == ErrorCode.CANCELLED:
        state = "cancelled"
    created, started = _number(record, "created_at"), _number(record, "started_at")
    finished = _number(record, "finished_at")
    view: dict[str, Any] = {
        "id": job_id,
        "object": "job",
        "status": state,
        "model": record.get("model"),
        "created_at": created,
        "started_at": started,
        "finished_at": finished,
        # Time in the queue: until a worker took it, or so far.
        "waited_s": round(((started or finished or clock.now()) - created), 3) if created else None,
        "result": None,
        "error": None,
    }
    if state == JobStatus.COMPLETED:
        outcome = JobOutcome(
            job_id=job_id,
            status=JobStatus.COMPLETED,
            content=record.get("content", ""),
            finish_reason=FinishReason(record.get("finish_reason", "stop")),
            prompt_tokens=_int(record.get("prompt_tokens")),
            completion_tokens=_int(record.get("completion_tokens")),
            logprobs=parse_logprobs(record["logprobs"]) if "logprobs" in record else None,
        )
        kind = JobKind(record.get("kind", JobKind.CHAT.value))
        view["result"] = answer(kind, job_id, view["model"] or "", int(created or 0), [outcome])
    elif state != JobStatus.PENDING and state != JobStatus.IN_PROGRESS:
        view["error"] = {"message": record.get("error", ""), "code": record.get("error_code")}
    return view


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _json(body: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")
