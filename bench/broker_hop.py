"""Broker-hop latency: how long one message takes from publish to consumer on this host's RabbitMQ.

    python bench/broker_hop.py [--messages 1500]

One process publishes (confirms on, mandatory, as the backend does) and consumes (as the worker
does) one message at a time, so the figure is RabbitMQ's own round trip plus one client's parsing:
the floor under the core path's latency at concurrency 1, which crosses the broker once. Each
publishing option the product uses (persistent, priority queue, per-message TTL) is switched on
one at a time. Then the other hop, the result's: a Redis PUBLISH to a subscriber. Starts a private
RabbitMQ and Redis (Debian packages). `bench/core_path.py` times both hops on its own servers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aio_pika
import uvloop
from pamqp.commands import Basic
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.local.servers import RabbitServer, RedisServer  # noqa: E402

VARIANTS = [  # (persistent, priority queue, per-message TTL)
    (False, False, False),
    (True, False, False),
    (True, True, False),
    (True, False, True),
    (True, True, True),
]


async def hop(port: int, n: int, persistent: bool, priority: bool, ttl: bool) -> float:
    """Median microseconds from publish to the consumer's callback."""
    conn = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:{port}/")
    async with conn:
        publisher = await conn.channel(publisher_confirms=True, on_return_raises=True)
        consumer = await conn.channel()
        await consumer.set_qos(prefetch_count=128)
        name = f"hop-{int(persistent)}{int(priority)}{int(ttl)}"
        args = {"x-max-priority": 10} if priority else {}
        queue = await consumer.declare_queue(name, durable=True, arguments=args)
        arrived: dict[str, float] = {}
        event = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrived[message.message_id or ""] = time.perf_counter()
            event.set()
            await message.ack()

        await queue.consume(on_message)
        channel = await publisher.get_underlay_channel()
        latencies = []
        for i in range(n):
            event.clear()
            props = Basic.Properties(
                delivery_mode=2 if persistent else 1,
                priority=5,
                message_id=str(i),
                expiration="300000" if ttl else None,
            )
            sent = time.perf_counter()
            confirm = asyncio.ensure_future(
                channel.basic_publish(
                    b"x" * 200, routing_key=name, properties=props, mandatory=True, wait=False
                )
            )
            await event.wait()
            latencies.append((arrived[str(i)] - sent) * 1e6)
            await confirm
        return statistics.median(latencies[n // 10 :])  # the first tenth warms up


async def store_hop(port: int, n: int) -> float:
    """Median microseconds from a Redis PUBLISH to its subscriber (the result's hop back to the
    backend), one message at a time, on a server at `port`."""
    publisher, listener = Redis(port=port), Redis(port=port)
    pubsub = listener.pubsub()
    await pubsub.subscribe("hop")
    arrived: list[float] = []
    event = asyncio.Event()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                arrived.append(time.perf_counter())
                event.set()

    task = asyncio.create_task(listen())
    try:
        latencies = []
        for i in range(n):
            event.clear()
            sent = time.perf_counter()
            reply = asyncio.ensure_future(publisher.publish("hop", str(i)))
            await event.wait()
            latencies.append((arrived[-1] - sent) * 1e6)
            await reply
        return statistics.median(latencies[n // 10 :])
    finally:
        task.cancel()
        await pubsub.aclose()
        await publisher.aclose()
        await listener.aclose()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1500)
    args = ap.parse_args()
    rabbit, redis = RabbitServer().start(), RedisServer().start()
    try:
        print(f"{'persistent':>10} {'priority':>8} {'ttl':>4} {'p50 publish->consumer':>22}")
        for persistent, priority, ttl in VARIANTS:
            p50 = await hop(rabbit.port, args.messages, persistent, priority, ttl)
            print(f"{persistent!s:>10} {priority!s:>8} {ttl!s:>4} {p50:>19.0f} us", flush=True)
        p50 = await store_hop(redis.port, args.messages)
        print(f"redis publish->subscriber {p50:.0f} us")
    finally:
        rabbit.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
