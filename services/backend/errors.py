"""Typed errors of the request path and their one mapping to HTTP statuses (README: statuses).

ApiError
├── BadRequest          400  a parameter no worker can honour (OpenAI routes)
├── InvalidInput        422  a body that validates but cannot be sent on (lone surrogates...)
├── BodyTooLarge        413  over MAX_BODY_BYTES (answered before the body is read)
├── UnknownModel        404  the body lists the models that are known
├── JobNotFound         404  no such job (or its record expired)
├── JobCancelled        409  the job was cancelled before it finished
├── NoLiveWorker        503  a known model with no worker heartbeat
├── BrokerUnavailable   503
├── StoreUnavailable    503
├── QueueFull           429  the model queue refused the job (x-overflow reject-publish)
├── JobTimedOut         504  no outcome by JOB_TIMEOUT
└── ModelFailed         502  the worker ran the job and the model raised

The original endpoints answer `{"detail": ...}`; under `/v1` every error, FastAPI's own 401 and
validation errors included, has OpenAI's body `{"error": {"message", "type", "param", "code"}}`,
so the openai SDK raises its typed exceptions (validation errors are 400 there, as OpenAI's).
"""

import math
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.backend.metrics import REJECTED

OPENAI_PREFIX = "/v1/"


class ApiError(Exception):
    status_code = 500
    code: str | None = None  # OpenAI's machine-readable `code`

    def __init__(self, detail: object) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def message(self) -> str:
        if isinstance(self.detail, dict):
            return str(self.detail.get("message", self.detail))
        return str(self.detail)


class BadRequest(ApiError):
    status_code = 400

    def __init__(self, detail: str, param: str | None = None) -> None:
        super().__init__(detail)
        self.param = param


class InvalidInput(ApiError):
    status_code = 422
    code = "invalid_value"


class BodyTooLarge(ApiError):
    status_code = 413
    code = "body_too_large"


class UnknownModel(ApiError):
    status_code = 404
    code = "model_not_found"

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__({"message": f"unknown model {model!r}", "known_models": known})

    @property
    def message(self) -> str:
        assert isinstance(self.detail, dict)
        return f"{self.detail['message']}; known models: {', '.join(self.detail['known_models'])}"


class JobNotFound(ApiError):
    status_code = 404
    code = "job_not_found"


class JobCancelled(ApiError):
    status_code = 409
    code = "cancelled"


class NoLiveWorker(ApiError):
    status_code = 503
    code = "no_live_worker"


class BrokerUnavailable(ApiError):
    status_code = 503
    code = "broker_unavailable"


class StoreUnavailable(ApiError):
    status_code = 503
    code = "store_unavailable"


class QueueFull(ApiError):
    status_code = 429
    code = "queue_full"


class JobTimedOut(ApiError):
    status_code = 504
    code = "timeout"


class ModelFailed(ApiError):
    status_code = 502
    code = "model_error"


# OpenAI's error `type` per status (what its own API and vLLM's server send).
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(
    message: str, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    kind = _OPENAI_TYPES.get(status, "server_error" if status < 503 else "service_unavailable")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def is_openai(scope: MutableMapping[str, Any]) -> bool:
    return str(scope.get("path", "")).startswith(OPENAI_PREFIX)


def _is_openai(request: Request) -> bool:
    return is_openai(request.scope)


def json_safe(value: Any) -> Any:
    """`value` as JSON can carry it: echoed client input may hold NaN, infinities, lone
    surrogates or objects (pydantic's error `input` and `ctx`), which would turn a 422 into a 500.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool | int | None):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return json_safe(str(value))


def error_response(
    scope: MutableMapping[str, Any], status: int, message: str, code: str | None = None
) -> JSONResponse:
    """One error in the body the route's clients expect (OpenAI's under /v1)."""
    headers = _retry_after(status)
    if is_openai(scope):
        body = openai_error(json_safe(message), 400 if status == 422 else status, code)
        return JSONResponse(body, status_code=400 if status == 422 else status, headers=headers)
    return JSONResponse({"detail": json_safe(message)}, status_code=status, headers=headers)


def _retry_after(status: int) -> dict[str, str] | None:
    return {"Retry-After": "1"} if status in (429, 503) else None


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    REJECTED.labels(str(exc.status_code)).inc()
    headers = _retry_after(exc.status_code)
    if _is_openai(request):
        param = exc.param if isinstance(exc, BadRequest) else None
        status = 400 if exc.status_code == 422 else exc.status_code
        body = openai_error(json_safe(exc.message), status, exc.code, param)
        return JSONResponse(body, status_code=status, headers=headers)
    body = {"detail": json_safe(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


async def _handle_http(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, HTTPException)
    if not _is_openai(request):
        return await http_exception_handler(request, exc)
    REJECTED.labels(str(exc.status_code)).inc()
    body = openai_error(str(exc.detail), exc.status_code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if not _is_openai(request):
        REJECTED.labels("422").inc()
        errors = [
            {k: v for k, v in error.items() if k in ("type", "loc", "msg", "input", "ctx")}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": json_safe(errors)}, status_code=422)
    REJECTED.labels("400").inc()
    first = exc.errors()[0] if exc.errors() else {}
    # ("body", "messages", 0, "content") -> "messages[0].content"
    param = "".join(
        f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ())[1:]
    ).lstrip(".")
    message = json_safe(f"{param or 'body'}: {first.get('msg', 'invalid request')}")
    return JSONResponse(openai_error(message, 400, "invalid_value", param or None), 400)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _handle)
    app.add_exception_handler(HTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)
