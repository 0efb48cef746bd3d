"""The best-case prototype of `docs/broker-path-limit.md`, rebuilt as a same-run baseline.

The benchmark's target (>= 0.30 x the floor at c=64, p50 <= 1 ms at c=1) is what this prototype
reached on the machine the note was measured on; VMs of the same kind differ (the floor's own c=1
p50 has ranged from 0.15 to 0.24 ms). `bench/core_path.py --prototype` runs it beside the product
on the same RabbitMQ and Redis with the same client, so the product is compared with the
prototype on the same machine in the same minutes.

What it is (the note's design, nothing more): `POST /generate` parsed by the backend's own pydantic
model -> a persistent message published with confirms to a durable queue -> a worker (prefetch 64)
answering an instant echo, its Redis `SET` with TTL + `PUBLISH` batched per loop turn in one
pipeline, then one `ack(multiple)` -> one pub/sub subscription per backend process resolving the
future registered before publishing. What it leaves out, and the product has: routing by live
worker announcements, priority and TTL on the queue, job records and status, deadlines, error
mapping, metrics, recovery from a lost broker or store, a result landing before the subscription.

    uvicorn bench.prototype:app   # the HTTP side (RABBIT_MQ_*, REDIS_* as the services read them)
    python bench/prototype.py     # the worker
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import orjson
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi import FastAPI, Response  # noqa: E402

from services.backend.api.main import telemetry  # noqa: E402
from services.backend.schemas.original import PromptModel, ResponseModel, answer_response  # noqa: E402
from services.common.settings import CommonSettings  # noqa: E402

QUEUE = "prototype"
CHANNEL = "prototype:results"


def _connect_redis() -> aioredis.Redis:
    s = CommonSettings()
    return aioredis.Redis(
        host=s.REDIS_HOST, port=s.REDIS_PORT, password=s.redis_password, db=s.REDIS_DB
    )


class _State:
    exchange: aio_pika.abc.AbstractExchange
    waiting: dict[str, asyncio.Future[str]]


state = _State()


async def _listen(redis: aioredis.Redis) -> None:
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            job_id, content = orjson.loads(message["data"])
            future = state.waiting.get(job_id)
            if future is not None and not future.done():
                future.set_result(content)


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    connection = await aio_pika.connect_robust(CommonSettings().amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(QUEUE, durable=True)
    state.exchange = channel.default_exchange
    state.waiting = {}
    redis = _connect_redis()
    listener = asyncio.create_task(_listen(redis))
    await asyncio.sleep(0.2)  # subscribed before the first request (a prototype may be naive)
    yield
    listener.cancel()
    await redis.aclose()
    await connection.close()


app = FastAPI(lifespan=lifespan, telemetry=telemetry())


@app.post("/generate", response_model=ResponseModel)
async def generate(body: PromptModel) -> Response:
    job_id = uuid.uuid4().hex
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    state.waiting[job_id] = future  # registered before publishing: an answer cannot be missed
    try:
        await state.exchange.publish(  # awaits the broker's confirm
            aio_pika.Message(
                orjson.dumps({"job_id": job_id, "content": body.content}),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=job_id,
            ),
            routing_key=QUEUE,
        )
        return answer_response(await asyncio.wait_for(future, 300))
    finally:
        state.waiting.pop(job_id, None)


async def worker() -> None:
    redis = _connect_redis()
    connection = await aio_pika.connect_robust(CommonSettings().amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=64)
    queue = await channel.declare_queue(QUEUE, durable=True)
    done: list[tuple[aio_pika.abc.AbstractIncomingMessage, str, bytes]] = []
    wake = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        job = orjson.loads(message.body)
        answer = orjson.dumps([job["job_id"], job["content"]])  # an instant echo
        done.append((message, job["job_id"], answer))
        wake.set()

    async def flush() -> None:
        # One pipeline and one ack per burst; deliveries finish in order, so ack(multiple)
        # of the last one settles exactly this batch.
        while True:
            await wake.wait()
            wake.clear()
            batch = done[:]
            done.clear()
            pipe = redis.pipeline(transaction=False)
            for _, job_id, payload in batch:
                pipe.set(f"prototype:{job_id}", payload, ex=3600)
                pipe.publish(CHANNEL, payload)
            await pipe.execute()
            await batch[-1][0].ack(multiple=True)

    flusher = asyncio.create_task(flush())
    await queue.consume(on_message)
    try:
        await asyncio.Future()  # until the process is stopped
    finally:
        flusher.cancel()
        await connection.close()
        await redis.aclose()


if __name__ == "__main__":
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(worker())
