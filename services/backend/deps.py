"""FastAPI dependencies: the process-wide objects made in `lifespan`, reached by injection."""

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from services.backend.config import Settings, get_settings
from services.backend.jobs import JobService


# Dependencies are `async def` on purpose: FastAPI runs plain `def` ones in a thread pool,
# a thread hop per request on the hot path.
async def get_job_service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


async def settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]
JobServiceDep = Annotated[JobService, Depends(get_job_service)]


async def require_api_key(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """When API_KEYS is set, accept `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    keys = settings.api_keys
    if not keys:
        return
    given = x_api_key
    if authorization is not None and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    if given is None or not any(secrets.compare_digest(given, k) for k in keys):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )


ApiKeyDep = Depends(require_api_key)
