"""Real Redis and RabbitMQ for the whole session (Debian's servers, private dirs and ports).

Each test gets its own Redis prefix and queue names, so tests never see each other's jobs.
Tests that take a server down get private servers of their own (`own_servers`).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.local.servers import RabbitServer, RedisServer  # noqa: E402
from tools.local.stack import Stack, stack_env  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbit_server() -> Iterator[RabbitServer]:
    server = RabbitServer().start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def stack(
    redis_server: RedisServer, rabbit_server: RabbitServer, prefix: str, tmp_path: Path
) -> Iterator[Stack]:
    """Start backends and workers against the session's servers; all stopped at the end."""
    s = Stack(stack_env(redis_server.port, rabbit_server.port, prefix), tmp_path)
    yield s
    s.close()


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[RedisServer, RabbitServer]]:
    """Servers of this test alone, which it may stop and restart."""
    (tmp_path / "redis").mkdir()
    (tmp_path / "rabbit").mkdir()
    redis = RedisServer(tmp_path / "redis").start()
    rabbit = RabbitServer(tmp_path / "rabbit").start()
    yield redis, rabbit
    rabbit.stop()
    redis.stop()


@pytest.fixture
def own_stack(
    own_servers: tuple[RedisServer, RabbitServer], prefix: str, tmp_path: Path
) -> Iterator[Stack]:
    redis, rabbit = own_servers
    s = Stack(stack_env(redis.port, rabbit.port, prefix), tmp_path)
    yield s
    s.close()


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"
