"""Writing a streamed job's answer to its piece stream as the model makes it, coalesced.

At most one append per job is on its way to Redis; text the model makes meanwhile goes out with
the next one. A slow model's tokens go out one by one (first token as soon as it exists); a fast
one's are batched by the round trip, so streaming never costs a Redis write per token.
"""

import asyncio
import logging

from services.common.logs import describe
from services.common.protocol import TokenLogprob
from services.common.store import ResultStore

log = logging.getLogger(__name__)


class PieceWriter:
    def __init__(self, store: ResultStore, job_id: str, notify: str) -> None:
        self._store = store
        self._job_id = job_id
        self._notify = notify
        self._buffer: list[str] = []
        # The buffered pieces' token logprobs (only when the job asked for them).
        self._logprobs: list[TokenLogprob] = []
        self._inflight: asyncio.Future[None] | None = None
        self.appends = 0  # writes made (tests, logs)
        self._lost = False

    def add(self, text: str, logprobs: list[TokenLogprob] | None = None) -> None:
        if not text and not logprobs:
            return
        self._buffer.append(text)
        if logprobs:
            self._logprobs.extend(logprobs)
        if self._inflight is None or self._inflight.done():
            self._send()

    def _send(self) -> None:
        text = "".join(self._buffer)
        logprobs = self._logprobs or None
        self._buffer.clear()
        self._logprobs = []
        self.appends += 1
        self._inflight = asyncio.ensure_future(
            self._store.append(self._job_id, text, self._notify, logprobs)
        )
        self._inflight.add_done_callback(self._sent)

    def _sent(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and (error := done.exception()) is not None and not self._lost:
            # The final write carries the whole answer: a reader fills in what it missed.
            log.warning("job %s: a piece was not written (%s)", self._job_id, describe(error))
            self._lost = True
        if self._buffer:
            self._send()

    async def flush(self) -> None:
        """Wait until every piece added so far is written (before the job's final write)."""
        while self._inflight is not None and not self._inflight.done() or self._buffer:
            if self._inflight is None or self._inflight.done():
                self._send()
            assert self._inflight is not None
            await asyncio.wait([self._inflight])

    def abandon(self) -> None:
        """Drop what is not yet written (the job ended otherwise: error, cancel, shutdown)."""
        self._buffer.clear()
        self._logprobs = []
