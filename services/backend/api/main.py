"""The API's shape: every route, and the framework options every request pays for.

Both the backend app and the benchmark's HTTP floor (`bench/floor_app.py`) are built with these,
so the floor pays the same framework costs as the real path.
"""

import os

from fastapi import APIRouter
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from starlette.routing import BaseRoute

from services.backend.api.routes import health, jobs, openai, original

# The original endpoints first: they are matched first, so they pay nothing for the others.
ROUTERS: tuple[APIRouter, ...] = (original.router, openai.router, jobs.router, health.router)


def routes() -> list[BaseRoute]:
    """Every route of ROUTERS, for `FastAPI(routes=...)`.

    FastAPI >= 0.137 includes a router lazily: `include_router` adds a node that is matched, and
    whose routes' version is recomputed, on every request (measured on the floor app, 6 rounds
    interleaved: +10 % CPU per request). A router's own prefix, dependencies and responses are
    already part of each route it made (`APIRouter.add_api_route` applies them), so its routes
    served from the app's own router are the same API (`/v1` keeps its prefix and key check:
    tested in test_openai_api.py).
    """
    return [route for router in ROUTERS for route in router.routes]


def telemetry() -> TelemetryConfig:
    """FastAPI's native OpenTelemetry: on where this process has a provider, else off.

    FastAPI asks on every request whether a tracer, meter or logger provider has been set up
    since start (three lookups through `os.environ`: +13 % CPU per request on the floor app).
    Nothing in this service sets one up later: a provider comes from the environment (`OTEL_*`
    variables, `FASTAPI_OTEL_AUTO_CONFIGURE=true`) or from a wrapper such as
    `opentelemetry-instrument`, which installs it before the app is built. So it is asked once.
    """
    configured = (
        any(name.startswith("OTEL_") for name in os.environ)
        or os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true"
        or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    )
    if configured:
        return {}  # FastAPI's defaults: everything on
    return {"tracing": False, "metrics": False, "logs": False}
