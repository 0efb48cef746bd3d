"""The framework options the backend (and the benchmark's floor) are built with."""

from __future__ import annotations

import os

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

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


def test_a_router_with_settings_of_its_own_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    prefixed = APIRouter(prefix="/v2")

    @prefixed.get("/x")
    async def x() -> None: ...

    monkeypatch.setattr(api, "ROUTERS", (*api.ROUTERS, prefixed))
    with pytest.raises(ValueError, match="include it instead"):
        FastAPI(routes=api.routes())
