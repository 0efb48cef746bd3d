"""What every request meets before routing: the body size limit and keys for the operator pages.

A pure ASGI middleware (no per-request Request object or task): a body over MAX_BODY_BYTES is
refused with 413 from its Content-Length before a byte of it is read (a chunked body is counted as
it comes and refused at the limit), so a 50 MB prompt never reaches the parser, the broker or Redis.
`/metrics` and the API docs are open unless keys are configured and PUBLIC_ENDPOINTS leaves them
out: they name the models and their load.
"""

from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.backend.errors import error_response

Message = MutableMapping[str, Any]

# Operator pages, by the PUBLIC_ENDPOINTS name that leaves them open.
OPERATOR_PATHS = {
    "/metrics": "metrics",
    "/docs": "docs",
    "/docs/oauth2-redirect": "docs",
    "/redoc": "docs",
    "/openapi.json": "docs",
}


class _TooLarge(Exception):
    pass


class EdgeGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        public: frozenset[str],
        check_key: Callable[[Request], None],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.public = public
        self.check_key = check_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = OPERATOR_PATHS.get(scope["path"])
        if page is not None and page not in self.public:
            try:
                self.check_key(Request(scope))
            except HTTPException as e:
                await error_response(scope, e.status_code, str(e.detail))(scope, receive, send)
                return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read it here, within the limit, then hand it on.
        try:
            body = await self._read_within_limit(receive)
        except _TooLarge:
            await self._refuse(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_within_limit(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body over the limit of {self.max_body_bytes} bytes (MAX_BODY_BYTES)"
        response = error_response(scope, 413, message, "body_too_large")
        response.headers["Connection"] = "close"  # the unread body must not be taken as a request
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
