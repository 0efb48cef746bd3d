"""FastAPI dependencies: the process-wide objects made in `lifespan`, reached by injection.

They are `async def` and take only the `Request` on purpose: FastAPI runs plain `def` dependencies
in a thread pool, and resolving `Header()` parameters costs more than reading two headers; both
sit on the hot path of every job request.
"""

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from services.backend.jobs import JobService


async def get_job_service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


JobServiceDep = Annotated[JobService, Depends(get_job_service)]


async def require_api_key(request: Request) -> None:
    """When API_KEYS is set, accept `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    keys: frozenset[str] = request.app.state.api_keys
    if not keys:
        return
    headers = request.headers
    given = headers.get("x-api-key")
    authorization = headers.get("authorization")
    if authorization is not None and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    if given is None or not any(secrets.compare_digest(given.encode(), k.encode()) for k in keys):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )


ApiKeyDep = Depends(require_api_key)
