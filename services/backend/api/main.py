"""All routers of the API, gathered in one place.

Each is included into the app directly: FastAPI resolves included routers lazily on every request,
and a router nested in a router doubles that cost on the hot path.
"""

from fastapi import FastAPI

from services.backend.api.routes import health, jobs

ROUTERS = (jobs.router, health.router)


def include_routers(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
