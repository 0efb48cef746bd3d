"""FastAPI dependencies: the process-wide objects made in `lifespan`, reached by injection.

One `async def` dependency per job request, taking only the `Request`, on purpose: FastAPI runs
plain `def` dependencies in a thread pool, and each extra dependency or `Header()` parameter
costs measurably on the hot path (the floor app went from 7,400 to 4,500 req/s with two
dependencies, a query parameter and nested routers).
"""

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from services.backend.jobs import JobService


def check_api_key(request: Request) -> None:
    """When API_KEYS is set, require `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
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


async def get_job_service(request: Request) -> JobService:
    """The job service of this process, for a caller that passed the API-key check."""
    check_api_key(request)
    service: JobService = request.app.state.jobs
    return service


JobServiceDep = Annotated[JobService, Depends(get_job_service)]
