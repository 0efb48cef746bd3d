"""Auto-pipelining on a real Redis: batched round trips, replies and errors per caller, and the
dedicated connection's life (auth, db, a server that goes away and comes back, a silent one)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.pipelining import AutoPipeline
from services.common.redis_wire import encode_command
from tools.local.servers import RedisServer, free_port


def test_commands_are_encoded_as_resp_bulk_strings() -> None:
    assert encode_command(("SET", b"k", 7, 0.5, "é")) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n$3\r\n0.5\r\n$2\r\n\xc3\xa9\r\n"
    )
    with pytest.raises(TypeError):
        encode_command(("SET", "k", True))
    with pytest.raises(TypeError):
        encode_command(("SET", "k", None))  # type: ignore[arg-type]


async def _one_turn_one_write(port: int, prefix: str) -> None:
    redis = Redis(port=port)
    auto = AutoPipeline(redis)
    replies = await asyncio.gather(
        *(auto.submit("INCRBY", f"{prefix}:n", i) for i in range(1, 101))
    )
    assert sorted(replies)[-1] == sum(range(1, 101))
    assert auto.batches == 1
    assert await auto.submit("GET", f"{prefix}:n") == str(sum(range(1, 101))).encode()
    await auto.aclose()
    await redis.aclose()


async def _in_flight_then_together(port: int, prefix: str) -> None:
    redis = Redis(port=port)
    auto = AutoPipeline(redis)
    # The first command holds the wire for 0.3 s (BLPOP on an empty list)...
    slow = auto.submit("BLPOP", f"{prefix}:empty", 0.3)
    # ...while 50 commands come in over 50 loop turns: they leave as one more write.
    later = []
    for i in range(50):
        later.append(auto.submit("RPUSH", f"{prefix}:l", i))
        await asyncio.sleep(0)
    assert await slow is None
    assert await asyncio.gather(*later) == list(range(1, 51))
    assert auto.batches == 2
    await auto.aclose()
    await redis.aclose()


async def _errors_per_caller(port: int, prefix: str) -> None:
    redis = Redis(port=port)
    auto = AutoPipeline(redis)
    await redis.set(f"{prefix}:s", "text")
    ok = auto.submit("SET", f"{prefix}:t", "1")
    bad = auto.submit("INCR", f"{prefix}:s")
    unknown = auto.submit("EVALSHA", "0" * 40, 0)
    after = auto.submit("GET", f"{prefix}:t")
    assert await ok == b"OK"
    with pytest.raises(ResponseError, match="not an integer"):
        await bad
    with pytest.raises(NoScriptError):  # what ResultStore catches to load its scripts again
        await unknown
    assert await after == b"1"
    await auto.aclose()
    await redis.aclose()


async def test_commands_of_one_turn_share_a_write(redis_server: RedisServer, prefix: str) -> None:
    await _one_turn_one_write(redis_server.port, prefix)


async def test_commands_wait_for_the_batch_in_flight_then_go_together(
    redis_server: RedisServer, prefix: str
) -> None:
    await _in_flight_then_together(redis_server.port, prefix)


async def test_a_failing_command_fails_only_its_caller(
    redis_server: RedisServer, prefix: str
) -> None:
    await _errors_per_caller(redis_server.port, prefix)


async def test_a_restarted_server_fails_the_callers_in_flight_then_serves_again(
    tmp_path: Path,
) -> None:
    await _restart(RedisServer(tmp_path).start())


def test_the_same_under_uvloop_as_the_services_run(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    # uvloop's transports differ from asyncio's (they are not asyncio.Transport subclasses).
    async def scenarios() -> None:
        await _one_turn_one_write(redis_server.port, prefix + ":uv1")
        await _in_flight_then_together(redis_server.port, prefix + ":uv2")
        await _errors_per_caller(redis_server.port, prefix + ":uv3")
        await _restart(RedisServer(tmp_path).start())

    uvloop.run(scenarios())


async def test_connection_errors_reach_every_caller() -> None:
    redis = Redis(port=free_port(), socket_connect_timeout=0.5)
    auto = AutoPipeline(redis)
    futs = [auto.submit("PING") for _ in range(3)]
    for fut in futs:
        with pytest.raises(ConnectionError):
            await fut
    await redis.aclose()


async def test_password_and_db_come_from_the_client(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        admin = Redis(port=server.port)
        await admin.config_set("requirepass", "s3cret")
        await admin.aclose()
        right = Redis(port=server.port, password="s3cret", db=3)
        auto = AutoPipeline(right)
        assert await auto.submit("SET", "where", "db3") == b"OK"
        assert await right.get("where") == b"db3"  # the same db as the client's own commands
        await auto.aclose()
        await right.aclose()

        wrong = AutoPipeline(Redis(port=server.port, password="nope"))
        with pytest.raises(AuthenticationError):
            await wrong.submit("PING")
    finally:
        server.stop()


async def _restart(server: RedisServer) -> None:
    redis = Redis(port=server.port, socket_connect_timeout=0.5)
    auto = AutoPipeline(redis)
    try:
        assert await auto.submit("PING") == b"PONG"
        blocked = auto.submit("BLPOP", "nothing", 5)
        await asyncio.sleep(0.1)
        server.stop()
        with pytest.raises(ConnectionError):
            await blocked
        with pytest.raises(ConnectionError):  # down: a clear error, not a hang
            await auto.submit("PING")
        server.start()
        assert await auto.submit("PING") == b"PONG"  # reconnected by itself
    finally:
        await auto.aclose()
        await redis.aclose()
        server.stop()


async def test_a_server_that_stops_answering_times_out_as_a_redis_error() -> None:
    # Accepts the connection and reads, never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        redis = Redis(port=port, socket_timeout=0.3)
        auto = AutoPipeline(redis)
        with pytest.raises(RedisTimeoutError) as caught:
            await auto.submit("PING")
        assert isinstance(caught.value, RedisError)
        await auto.aclose()
        await redis.aclose()


async def test_shutdown_fails_what_is_queued() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        redis = Redis(port=silent.getsockname()[1], socket_timeout=10)
        auto = AutoPipeline(redis)
        first = auto.submit("PING")
        await asyncio.sleep(0.1)  # on the wire, unanswered
        queued = auto.submit("PING")
        await auto.aclose()
        for fut in (first, queued):
            with pytest.raises(ConnectionError):
                await fut
        await redis.aclose()


async def test_garbage_from_the_server_fails_the_callers_as_a_connection_error() -> None:
    async def not_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # something else on the port
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(not_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = Redis(port=port, socket_timeout=5)
    auto = AutoPipeline(redis)
    with pytest.raises(ConnectionError, match="protocol error"):
        await asyncio.wait_for(auto.submit("PING"), 5)
    await auto.aclose()
    await redis.aclose()
    server.close()
    await server.wait_closed()
