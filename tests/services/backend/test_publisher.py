"""The publisher on a real RabbitMQ: confirmed, persistent, each broker refusal its own error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractRobustChannel

from services.backend.errors import NoLiveWorker, QueueFull
from services.backend.publisher import JobPublisher
from services.common.connections import connect_broker, declare_model_queue
from services.common.settings import CommonSettings
from tools.local.servers import RabbitServer


@pytest.fixture
def settings(rabbit_server: RabbitServer) -> CommonSettings:
    return CommonSettings(RABBIT_MQ_PORT=rabbit_server.port, _env_file=None)


@pytest.fixture
async def publisher(settings: CommonSettings) -> AsyncIterator[JobPublisher]:
    pub = await JobPublisher.open(settings, timeout=5, name="test-publisher")
    yield pub
    await pub.close()


@pytest.fixture
async def channel(settings: CommonSettings) -> AsyncIterator[AbstractRobustChannel]:
    """A worker's side of the broker: declares queues and reads what was published."""
    connection = await connect_broker(settings, name="test-worker-side")
    yield await connection.channel()  # type: ignore[misc]
    await connection.close()


async def test_a_job_is_published_persistent_with_priority_and_ttl(
    publisher: JobPublisher, channel: AbstractRobustChannel, prefix: str
) -> None:
    queue = await declare_model_queue(channel, f"{prefix}-q", max_length=0)
    await publisher.publish(f"{prefix}-q", b'{"x": 1}', job_id="j1", priority=99, expiration_s=30)
    message = await queue.get(timeout=5)
    assert message.body == b'{"x": 1}'
    assert message.message_id == "j1"
    assert message.delivery_mode == 2
    assert message.priority == 10  # clamped to the queue's x-max-priority
    assert message.expiration == 30.0
    await message.ack()


async def test_a_queue_nobody_declared_is_no_live_worker(
    publisher: JobPublisher, prefix: str
) -> None:
    with pytest.raises(NoLiveWorker, match="no worker has declared it"):
        await publisher.publish(f"{prefix}-nowhere", b"{}", job_id="j", priority=5, expiration_s=5)


async def test_a_full_queue_is_queue_full(
    publisher: JobPublisher, channel: AbstractRobustChannel, prefix: str
) -> None:
    await declare_model_queue(channel, f"{prefix}-full", max_length=1)
    await publisher.publish(f"{prefix}-full", b"{}", job_id="a", priority=5, expiration_s=5)
    with pytest.raises(QueueFull):
        await publisher.publish(f"{prefix}-full", b"{}", job_id="b", priority=5, expiration_s=5)
