"""Batched acks on a real RabbitMQ: fewer frames, and never an ack for a job still running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from services.common.connections import dead_letter_queue, declare_model_queue
from services.worker.acks import AckBatcher
from tests.utils.wait import until
from tools.local.servers import RabbitServer


@pytest.fixture
async def connection(rabbit_server: RabbitServer) -> AsyncIterator[AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:{rabbit_server.port}/")
    yield conn
    await conn.close()


async def _deliver(
    conn: AbstractRobustConnection, queue: str, n: int, acks: AckBatcher, durable: bool = False
) -> tuple[aio_pika.abc.AbstractChannel, list[AbstractIncomingMessage]]:
    """Publish n messages and take them all unacked on a fresh channel (`durable`: to the
    model queue already declared under that name)."""
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=n)
    if durable:
        q = await ch.declare_queue(queue, passive=True)
    else:
        q = await ch.declare_queue(queue, auto_delete=False)
    for i in range(n):
        await ch.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=queue)
    got: list[AbstractIncomingMessage] = []
    all_in = asyncio.Event()

    async def on_message(m: AbstractIncomingMessage) -> None:
        acks.received(m)
        got.append(m)
        if len(got) == n:
            all_in.set()

    await q.consume(on_message)
    await asyncio.wait_for(all_in.wait(), 10)
    got.sort(key=lambda m: m.delivery_tag or 0)
    return ch, got


async def _sent(acks: AckBatcher) -> None:
    """Until every ack collected so far has been written: none held, none waiting, no flush
    under way (at most 5 s, far less than any hold these tests set and then wait out)."""

    def idle() -> bool:
        return not acks._done and acks._held is None and acks._flushing is None

    await until(idle, 5, lambda: f"the acks to be sent ({acks.frames} frames so far)")


async def _accepted(msgs: list[AbstractIncomingMessage]) -> None:
    """A round trip on the consuming channel: the broker handles a channel's frames in order, so
    its answer means every ack and nack sent before it was taken. One for an unknown delivery tag
    closes the channel instead, and this raises."""
    channel = msgs[0].channel
    await channel.basic_qos(prefetch_count=len(msgs), timeout=5)
    assert not channel.is_closed


async def _left_in_queue(conn: AbstractRobustConnection, queue: str) -> int:
    """Messages back in the queue once the consuming channel is gone (never acked)."""
    ch = await conn.channel()
    q = await ch.declare_queue(queue, passive=True)
    count = q.declaration_result.message_count
    await ch.close()
    return count or 0


async def test_acks_of_one_turn_go_as_one_frame(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    acks = AckBatcher()
    ch, msgs = await _deliver(connection, f"{prefix}-a", 20, acks)
    for m in reversed(msgs[:10]):  # finish order does not matter within a turn
        acks.ack(m)
    await _sent(acks)
    assert acks.frames == 1
    # 11 still runs: 12..20 are acked one by one (a slow job holds back nothing behind it)...
    for m in msgs[11:]:
        acks.ack(m)
    await _sent(acks)
    assert acks.frames == 1 + 9
    # ...and when 11 finishes, one frame covers it.
    acks.ack(msgs[10])
    await _sent(acks)
    assert acks.frames == 11
    await ch.close()
    assert await _left_in_queue(connection, f"{prefix}-a") == 0


async def test_a_job_still_running_is_never_covered_by_a_multiple_ack(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    acks = AckBatcher()
    ch, msgs = await _deliver(connection, f"{prefix}-b", 8, acks)
    running = {0, 4}
    for i, m in enumerate(msgs):
        if i not in running:
            acks.ack(m)
    await _sent(acks)
    await ch.close()  # the worker dies: exactly the two running jobs go back to the queue
    assert await _left_in_queue(connection, f"{prefix}-b") == 2


async def test_nacked_jobs_are_skipped_by_the_run_and_requeued(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    acks = AckBatcher()
    ch, msgs = await _deliver(connection, f"{prefix}-c", 6, acks)
    await acks.nack(msgs[1], requeue=False)
    await acks.nack(msgs[5], requeue=True)  # requeued: goes back, and may be redelivered here
    for i in (0, 2, 3, 4):
        acks.ack(msgs[i])
    await _sent(acks)
    assert acks.frames == 1  # 0, (1 settled), 2, 3, 4 are one run
    await _accepted(msgs)  # no "unknown delivery tag" from the broker
    await ch.close()
    assert await _left_in_queue(connection, f"{prefix}-c") == 1


async def test_acks_within_the_hold_go_as_one_frame(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    acks = AckBatcher(hold_s=0.5)
    ch, msgs = await _deliver(connection, f"{prefix}-e", 3, acks)
    acks.ack(msgs[0])
    for _ in range(3):  # later loop turns, well inside the hold
        await asyncio.sleep(0)
    acks.ack(msgs[2])
    acks.ack(msgs[1])
    assert acks.frames == 0
    await _sent(acks)
    assert acks.frames == 1  # one multiple ack for all three
    await ch.close()
    assert await _left_in_queue(connection, f"{prefix}-e") == 0


async def test_a_held_ack_leaves_when_the_hold_ends(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    acks = AckBatcher(hold_s=0.1)
    ch, msgs = await _deliver(connection, f"{prefix}-f", 2, acks)
    held_at = time.monotonic()
    acks.ack(msgs[0])
    await until(lambda: acks.frames, 5, "the held ack to leave")
    # Held for the hold (a timer may fire a clock tick early), not sent at once.
    assert time.monotonic() - held_at >= 0.099
    await _sent(acks)
    assert acks.frames == 1  # job 1 never finished; job 0 was not kept waiting for it
    await ch.close()
    assert await _left_in_queue(connection, f"{prefix}-f") == 1


async def test_a_full_prefetch_window_is_not_held(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    acks = AckBatcher(prefetch=2, hold_s=30)
    ch, msgs = await _deliver(connection, f"{prefix}-g", 2, acks)  # prefetch 2: the window is full
    acks.ack(msgs[0])
    await _sent(acks)  # gives up long before the 30 s hold would end
    assert acks.frames == 1  # the broker sends nothing more until an ack: not held
    await ch.close()
    assert await _left_in_queue(connection, f"{prefix}-g") == 1


async def test_stop_flush_sends_held_acks_at_once(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    acks = AckBatcher(hold_s=30)
    ch, msgs = await _deliver(connection, f"{prefix}-h", 2, acks)
    acks.ack(msgs[1])
    await acks.flush()  # what Worker.stop does before closing the channel
    assert acks.frames == 1
    await ch.close()
    assert await _left_in_queue(connection, f"{prefix}-h") == 1


async def test_a_rejected_job_among_acked_ones_is_dead_lettered_alone(
    connection: AbstractRobustConnection, prefix: str
) -> None:
    # The worker's model queue: a rejected job goes to its dead-letter queue. The multiple ack
    # of the jobs around it must neither cover it (it would be acked, not dead-lettered) nor stop
    # at it for good (the jobs after it would stay unacked).
    queue = f"{prefix}-r"
    setup = await connection.channel()
    await declare_model_queue(setup, queue, max_length=0)  # type: ignore[arg-type]
    acks = AckBatcher(prefetch=8)  # the window is full: acks leave at the end of this turn
    ch, msgs = await _deliver(connection, queue, 8, acks, durable=True)
    acks.ack(msgs[0])
    acks.ack(msgs[1])
    rejecting = asyncio.ensure_future(acks.nack(msgs[2], requeue=False))
    for m in msgs[3:6]:
        acks.ack(m)
    await rejecting
    await _sent(acks)
    for m in msgs[6:]:
        acks.ack(m)
    await _sent(acks)
    await _accepted(msgs)  # no ack or nack of an unknown delivery tag
    assert acks._frontier == 8  # one run over all of them at the end
    await ch.close()
    assert await _left_in_queue(connection, queue) == 0
    dead = await setup.declare_queue(dead_letter_queue(queue), passive=True)
    letter = await dead.get(timeout=5)
    assert letter.body == b"2"
    assert letter.headers["x-death"][0]["reason"] == "rejected"  # type: ignore[index]
    await letter.ack()
    assert await _left_in_queue(connection, dead_letter_queue(queue)) == 0
    await setup.close()
