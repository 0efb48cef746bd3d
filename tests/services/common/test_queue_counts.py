"""queue_counts on a real RabbitMQ: a missing queue between two existing ones closes its channel,
and the counts of the queues after it are still read."""

from __future__ import annotations

import aio_pika

from services.common.connections import (
    connect_broker,
    dead_letter_queue,
    declare_model_queue,
    queue_counts,
)
from services.common.settings import CommonSettings
from tools.local.servers import RabbitServer


async def test_counts_of_existing_queues_around_a_missing_one(
    rabbit_server: RabbitServer, prefix: str
) -> None:
    settings = CommonSettings(RABBIT_MQ_PORT=rabbit_server.port, _env_file=None)
    connection = await connect_broker(settings, name="test-counts")
    try:
        channel = await connection.channel()
        first, missing, last = f"{prefix}-a", f"{prefix}-missing", f"{prefix}-b"
        for queue in (first, last):
            await declare_model_queue(channel, queue, max_length=0)  # type: ignore[arg-type]
        for _ in range(2):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=first)
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}"), routing_key=dead_letter_queue(last)
        )
        counts = await queue_counts(connection, [first, missing, last, first], timeout=5)
        assert counts == {
            first: (2, 0),
            dead_letter_queue(first): (0, 0),
            last: (0, 0),
            dead_letter_queue(last): (1, 0),
        }
    finally:
        await connection.close()
