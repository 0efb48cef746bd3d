"""FastAPI dependencies: the process-wide objects made in `lifespan`, reached by injection.

One `async def` dependency per job request (FastAPI runs plain `def` dependencies in a thread
pool): the API-key check, the original SDK's `?queue_name=` (declared, so OpenAPI documents it)
and the Idempotency-Key, in one step.
"""

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from services.backend.auth import ApiKeys
from services.backend.errors import InvalidInput
from services.backend.job_service import Idempotency, JobService


def check_api_key(request: Request) -> None:
    """When keys are configured, require `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.required:
        return
    headers = request.headers
    given = headers.get("x-api-key")
    authorization = headers.get("authorization")
    if authorization is not None and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    if given is None or not keys.allows(given):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )


@dataclass(frozen=True, slots=True)
class OriginalCall:
    """What an original endpoint needs besides its body, read from the request in one step:
    the job service, the original SDK's `?queue_name=` (if any) and the Idempotency-Key."""

    service: JobService
    queue: str | None
    idempotency: Idempotency | None = None


async def original_call(
    request: Request,
    queue_name: Annotated[
        str | None,
        Query(description="Send the job to this queue (the original SDK's way to pick a model)."),
    ] = None,
) -> OriginalCall:
    """The job service of this process, for a caller that passed the API-key check."""
    check_api_key(request)
    if queue_name is not None and not queue_name.strip():
        raise RequestValidationError(
            [{"type": "missing", "loc": ("query", "queue_name"), "msg": "empty queue name"}]
        )
    return OriginalCall(request.app.state.jobs, queue_name, await idempotency_of(request))


OriginalCallDep = Annotated[OriginalCall, Depends(original_call)]


IDEMPOTENCY_HEADER = b"idempotency-key"


async def idempotency_of(request: Request) -> Idempotency | None:
    """The request's `Idempotency-Key` (the IETF draft's header), hashed with the API key that
    came with it, so two clients' keys never meet; None without one."""
    key = next((v for k, v in request.scope["headers"] if k == IDEMPOTENCY_HEADER), None)
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters")
    headers = request.headers
    who = (headers.get("authorization") or headers.get("x-api-key") or "").encode()
    key_hash = hashlib.sha256(who + b"\0" + key).hexdigest()
    body = await request.body()
    body_hash = hashlib.sha256(request.scope["path"].encode() + b"\0" + body).hexdigest()
    return Idempotency(key_hash, body_hash)


IdempotencyDep = Annotated[Idempotency | None, Depends(idempotency_of)]


async def require_api_key(request: Request) -> None:
    """The API-key check as a dependency of its own (the `/v1` routes)."""
    check_api_key(request)


async def get_job_service(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


JobServiceDep = Annotated[JobService, Depends(get_job_service)]
