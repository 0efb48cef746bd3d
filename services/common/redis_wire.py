"""A bare Redis connection for the two hot paths: the result writes and the result subscription.

RESP is written by hand and replies are parsed by hiredis (which redis-py uses too); errors are
redis-py's exception types, so callers handle them as before. Everything else (scripts loading,
reads, the model registry) stays on redis-py. Why: on a 2-core VM a PING round trip took
140-200 us through redis-py's pool (a lock, a liveness probe and observability hooks on each
check-out and return), about 105 us on a bare redis-py Connection and 55-75 us on a plain socket.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from redis.exceptions import AuthenticationError, ConnectionError, NoScriptError, ResponseError

Arg = bytes | str | int | float


def encode_command(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings (how every Redis client sends commands)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif isinstance(a, bool):  # a bool is an int: refuse it, as redis-py does
            raise TypeError("a bool is not a Redis argument; pass bytes, str, int or float")
        elif isinstance(a, int):
            b = b"%d" % a
        elif isinstance(a, float):
            b = repr(a).encode()
        else:
            raise TypeError(f"{type(a).__name__} is not a Redis argument")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _error(reply: hiredis.ReplyError) -> ResponseError:
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text)


class Wire(asyncio.Protocol):
    """The connection: replies are handed to the waiting futures in order; with `on_push`, a
    subscription's messages go there instead."""

    def __init__(self, on_push: Callable[[bytes], None] | None = None) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.on_push = on_push
        self.closed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            self._dispatch()
        except hiredis.ProtocolError as e:  # garbage on the wire: nothing after it can be trusted
            self.fail(ConnectionError(f"Redis protocol error: {e}"))

    def _dispatch(self) -> None:
        while (reply := self.reader.gets()) is not False:
            if self.on_push is not None and type(reply) is list and reply[0] == b"message":
                self.on_push(reply[2])
                continue
            if not self.waiting:  # nothing asked for this: the stream is out of step
                self.fail(ConnectionError("unexpected reply from Redis"))
                return
            fut = self.waiting.popleft()
            if fut.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(_error(reply))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    @property
    def alive(self) -> bool:
        return self.transport is not None

    def send(self, data: bytes, replies: list[asyncio.Future[Any]]) -> None:
        """Write encoded commands; `replies` get their answers, one future per command."""
        self.waiting.extend(replies)
        if self.transport is None:
            self.fail(ConnectionError("connection to Redis lost"))
        else:
            self.transport.write(data)

    async def call(self, *args: Arg, timeout: float | None) -> Any:
        """One command, answered within `timeout` (else the connection is dropped)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.send(encode_command(args), [fut])
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            command = args[0].decode() if isinstance(args[0], bytes) else args[0]
            self.fail(ConnectionError(f"Redis did not answer {command} within {timeout} s"))
            raise

    def fail(self, exc: Exception) -> None:
        """Fail every caller still waiting and drop the connection (users open a new one)."""
        waiting, self.waiting = self.waiting, deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(exc)
        if not self.closed.done():
            self.closed.set_result(exc)
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def close(self) -> None:
        self.fail(ConnectionError("connection closed"))


@dataclass(frozen=True)
class WireParams:
    host: str
    port: int
    username: str | None
    password: str | None
    db: int
    connect_timeout: float
    reply_timeout: float | None
    tls: ssl.SSLContext | None = None

    @classmethod
    def of(cls, redis: Redis) -> WireParams:
        """The same server, credentials and TLS as a redis-py client's pool."""
        kw = redis.connection_pool.connection_kwargs
        tls = None
        if issubclass(redis.connection_pool.connection_class, SSLConnection):
            tls = ssl.create_default_context(cafile=kw.get("ssl_ca_certs"))
            tls.check_hostname = kw.get("ssl_check_hostname", True)
            if kw.get("ssl_certfile"):
                tls.load_cert_chain(kw["ssl_certfile"], kw.get("ssl_keyfile"))
        return cls(
            host=kw.get("host", "localhost"),
            port=int(kw.get("port", 6379)),
            username=kw.get("username"),
            password=kw.get("password"),
            db=int(kw.get("db", 0)),
            connect_timeout=kw.get("socket_connect_timeout") or 5.0,
            reply_timeout=kw.get("socket_timeout"),
            tls=tls,
        )


async def open_wire(p: WireParams, on_push: Callable[[bytes], None] | None = None) -> Wire:
    """Connect, authenticate and select the database; raises redis-py's ConnectionError."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(p.connect_timeout):
            _, wire = await loop.create_connection(lambda: Wire(on_push), p.host, p.port, ssl=p.tls)
    except (OSError, TimeoutError) as e:
        raise ConnectionError(f"cannot connect to Redis at {p.host}:{p.port}: {e!r}") from None
    try:
        if p.password is not None:
            user = (p.username,) if p.username else ()
            await wire.call("AUTH", *user, p.password, timeout=p.connect_timeout)
        if p.db:
            await wire.call("SELECT", p.db, timeout=p.connect_timeout)
    except ResponseError as e:
        wire.close()
        raise AuthenticationError(str(e)) from None
    except (ConnectionError, TimeoutError) as e:
        wire.close()
        raise ConnectionError(f"Redis did not accept the connection: {e!r}") from None
    return wire
