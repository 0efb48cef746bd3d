"""Typed errors of the request path and their one mapping to HTTP statuses (CONTRACT.md).

ApiError
├── UnknownModel        404  the body lists the models that are known
├── NoLiveWorker        503  a known model with no worker heartbeat
├── BrokerUnavailable   503
├── StoreUnavailable    503
├── QueueFull           429  the model queue refused the job (x-overflow reject-publish)
├── JobTimedOut         504  no outcome by JOB_TIMEOUT
└── ModelFailed         502  the worker ran the job and the model raised
"""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.backend.metrics import REJECTED


class ApiError(Exception):
    status_code = 500

    def __init__(self, detail: object) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownModel(ApiError):
    status_code = 404

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__({"message": f"unknown model {model!r}", "known_models": known})


class NoLiveWorker(ApiError):
    status_code = 503


class BrokerUnavailable(ApiError):
    status_code = 503


class StoreUnavailable(ApiError):
    status_code = 503


class QueueFull(ApiError):
    status_code = 429


class JobTimedOut(ApiError):
    status_code = 504


class ModelFailed(ApiError):
    status_code = 502


async def _handle(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    REJECTED.labels(str(exc.status_code)).inc()
    headers = {"Retry-After": "1"} if exc.status_code in (429, 503) else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _handle)
