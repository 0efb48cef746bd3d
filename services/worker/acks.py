"""Acknowledging jobs in batches: one `basic.ack(multiple)` for many jobs instead of one per job.

Every ack is a frame and a socket write in the worker and work in the broker, and for a persistent
message it also releases the publisher's confirm (another frame, to the backend). Acks are
collected and sent together: one `multiple=True` ack for the unbroken run of finished deliveries
at the front of the channel, single acks for any that finished out of order (a long generation
must not hold back the acks, and so the prefetch slots, of fast ones behind it).

When they leave: `hold_s` (1 ms) after the first of them, so that jobs finishing within that
millisecond, in one loop turn or over several, share one frame; at once when the prefetch window
is full (the broker sends nothing more until an ack). Nobody waits for an ack: the backend answers
from the stored result, and a job whose ack is lost in a crash is redelivered and found finished.
Under load that means fewer ack and confirm frames: interleaved A/B at c=64 (6 rounds,
`bench/ab.py`), req/s x1.10 and CPU per job x0.91 (RabbitMQ x0.88, worker x0.89, backend x0.92);
at c=1 no change (p50 1.40 -> 1.39 ms). Holding only while other jobs ran gained nothing (x1.00):
under closed-loop load the jobs in flight finish together, and the batching that pays is across
those bursts.

Safety: `multiple=True` acks every outstanding tag up to the one named, so the run only covers
consecutive tags this worker has itself finished or settled: a delivery still running, one that
has not reached its handler yet, or one whose nack (requeue or dead-letter) is not yet written
leaves a gap the run cannot cross. Delivery tags are per channel; after a reconnect the state
starts again, and acks owed on the dead channel are dropped (the broker has already put those
jobs back, and their redelivery finds them finished in the store).
"""

import asyncio
import logging

from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import AbstractChannel

from services.common.logs import describe

log = logging.getLogger(__name__)


HOLD_S = 0.001


class AckBatcher:
    def __init__(self, *, prefetch: int = 0, hold_s: float = HOLD_S) -> None:
        """`prefetch`: the channel's prefetch count (0: unlimited)."""
        self._prefetch = prefetch
        self.hold_s = hold_s
        self._channel: AbstractChannel | None = None
        self._frontier = 0  # every tag <= frontier is settled on this channel
        self._done: set[int] = set()  # finished, ack not yet sent
        self._settled: set[int] = set()  # settled one by one above the frontier
        self._unsettled = 0  # deliveries received on this channel and not yet acked or nacked
        self._flushing: asyncio.Task[None] | None = None
        self._held: asyncio.TimerHandle | None = None
        self.frames = 0  # ack frames sent (for tests and benchmarks)

    @property
    def prefetch(self) -> int:
        return self._prefetch

    @prefetch.setter
    def prefetch(self, value: int) -> None:
        """Set once the channel's prefetch is known (the worker's, after its model loaded)."""
        self._prefetch = value

    def received(self, message: AbstractIncomingMessage) -> None:
        """Call as a delivery reaches its handler: a delivery on a new channel starts afresh."""
        if message.channel is not self._channel:
            self._reset(message.channel)
        self._unsettled += 1

    def ack(self, message: AbstractIncomingMessage) -> None:
        """The job is stored: ack it within `hold_s` (this loop turn if the window is full)."""
        if message.channel is not self._channel:
            log.debug("ack for a closed channel dropped (tag %s)", message.delivery_tag)
            return
        tag = message.delivery_tag
        assert tag is not None
        self._done.add(tag)
        if 0 < self._prefetch <= self._unsettled:
            self._send_soon()  # the window is full: the broker sends nothing more until an ack
        elif self._held is None and self._flushing is None:
            self._held = asyncio.get_running_loop().call_later(self.hold_s, self._send_soon)

    def _send_soon(self) -> None:
        """Flush at the end of this loop turn (a held flush is brought forward)."""
        self._cancel_held()
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_soon())

    async def nack(self, message: AbstractIncomingMessage, requeue: bool = True) -> None:
        """Settle a job now with a nack: handed back (`requeue`: the result store is down) or
        dead-lettered (rejected). Rare, so sent at once, alone.

        The tag joins the acked run only once its nack has been written: until then it is a gap,
        so a `multiple` ack flushed meanwhile cannot cover it (that would ack a job meant for the
        dead-letter queue, and the broker would then close the channel over the nack's unknown
        tag).
        """
        tag = message.delivery_tag
        assert tag is not None
        channel = message.channel
        try:
            await message.nack(requeue=requeue)
        finally:
            if channel is self._channel:
                self._settled.add(tag)
                self._unsettled -= 1

    async def _flush_soon(self) -> None:
        try:
            # Acks added while a flush was being written go out too, not with some later job's.
            while self._done and self._channel is not None:
                await self.flush()
        finally:
            self._flushing = None

    async def flush(self) -> None:
        """Send the acks collected so far."""
        self._cancel_held()
        channel, done = self._channel, self._done
        if channel is None or not done:
            return
        self._done = set()
        self._unsettled -= len(done)
        run_end, last_done = self._frontier, 0
        while True:
            nxt = run_end + 1
            if nxt in done:
                done.discard(nxt)
                last_done = nxt
            elif nxt in self._settled:
                self._settled.discard(nxt)
            else:
                break
            run_end = nxt
        self._frontier = run_end
        try:
            if last_done:
                await channel.basic_ack(last_done, multiple=True, wait=False)
                self.frames += 1
            for tag in sorted(done):
                await channel.basic_ack(tag, wait=False)
                self._settled.add(tag)
                self.frames += 1
        except Exception as e:  # a dead channel: the broker requeues; redelivery finds them done
            log.warning(
                "could not send acks (%s); the broker will redeliver those jobs", describe(e)
            )

    def _cancel_held(self) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None

    def _reset(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._frontier = 0
        self._done = set()
        self._settled.clear()
        self._unsettled = 0
