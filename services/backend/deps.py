"""FastAPI dependencies: the process-wide objects made in `lifespan`, reached by injection."""

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from services.backend.config import Settings, get_settings
from services.backend.jobs import JobService


def get_job_service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobServiceDep = Annotated[JobService, Depends(get_job_service)]


def require_api_key(
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
