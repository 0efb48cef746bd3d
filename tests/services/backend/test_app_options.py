"""The framework options the backend (and the benchmark's floor) are built with."""

from __future__ import annotations

import os

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from services.backend.api import main as api
from services.backend.main import create_app


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OTEL_") or name == "FASTAPI_OTEL_AUTO_CONFIGURE":
            monkeypatch.delenv(name)
    return monkeypatch


def test_telemetry_is_off_without_any_opentelemetry_setup(no_otel_env: pytest.MonkeyPatch) -> None:
    assert api.telemetry() == {"tracing": False, "metrics": False, "logs": False}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_SERVICE_NAME", "llm-wrap-backend"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("FASTAPI_OTEL_AUTO_CONFIGURE", "true"),
    ],
)
def test_telemetry_keeps_fastapis_defaults_when_opentelemetry_is_configured(
    no_otel_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    no_otel_env.setenv(name, value)
    assert api.telemetry() == {}


def test_every_route_of_every_router_is_served_from_the_app_itself() -> None:
    app = create_app()
    paths = {r.path for r in app.routes if isinstance(r, APIRoute)}
    expected = {r.path for router in api.ROUTERS for r in router.routes}  # type: ignore[attr-defined]
    assert expected and expected <= paths
    # No lazily included router node in between (each costs a match on every request).
    assert all(type(r).__name__ != "_IncludedRouter" for r in app.routes)


def test_a_routers_prefix_and_dependencies_survive_flattening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`/v1` is a prefixed router with the key check as its dependency: both must still apply
    once its routes are served from the app's own router."""

    async def refuse() -> None:
        raise HTTPException(status_code=401, detail="no")

    guarded = APIRouter(prefix="/v2", dependencies=[Depends(refuse)])

    @guarded.get("/x")
    async def x() -> dict[str, str]:
        return {"reached": "yes"}

    monkeypatch.setattr(api, "ROUTERS", (*api.ROUTERS, guarded))
    client = TestClient(FastAPI(routes=api.routes()))
    assert client.get("/v2/x").status_code == 401
    assert client.get("/x").status_code == 404
