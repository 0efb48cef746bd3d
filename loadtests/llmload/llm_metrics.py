"""The LLM metrics of one request, from what was timed on the wire. Pure arithmetic, no I/O.

Definitions (times from the moment the request was sent):
- end-to-end latency: until the answer is complete (the last byte, or `data: [DONE]`);
- time to first token (TTFT): until the first piece of text arrives (the opening chunk that only
  names the assistant's role does not count);
- inter-token latency (ITL): (last text - first text) / (output tokens - 1), the mean interval
  between tokens after the first, as vLLM's benchmarks define TPOT except that it ends at the last
  text rather than at the end of the stream (so the finishing and usage chunks do not count). A
  server that sends several tokens in one event still gets the right mean; none for one token;
- output tokens/s of a request: output tokens / end-to-end latency, the pace its caller saw;
- queue wait: started - accepted, generation: finished - started (llm-wrap's job times; accepted
  is the backend's clock, started and finished the worker's, so clock skew between hosts moves
  time between the two: a negative wait is shown as 0).
Output tokens are the usage chunk's `completion_tokens` when the server sends one, else the
answer's whitespace-separated words (exactly the echo model's tokens; about 0.75 of a real
tokenizer's count for English).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class StreamMetrics:
    e2e_s: float
    ttft_s: float
    itl_s: float | None  # None when there was one token
    output_tokens: int
    tokens_per_s: float


def stream_metrics(
    pieces: Sequence[tuple[float, str]], end_s: float, tokens: int | None = None
) -> StreamMetrics | None:
    """Metrics of a streamed answer: `pieces` are (seconds since sent, text), in arrival order;
    `end_s` is when the stream ended; `tokens` the server's count (else words are counted).
    None when no text came."""
    timed = [(t, text) for t, text in pieces if text]
    if not timed:
        return None
    first, last = timed[0][0], timed[-1][0]
    n = tokens if tokens is not None else count_tokens("".join(text for _, text in timed))
    n = max(n, 1)
    itl = (last - first) / (n - 1) if n > 1 else None
    return StreamMetrics(
        e2e_s=end_s,
        ttft_s=first,
        itl_s=itl,
        output_tokens=n,
        tokens_per_s=tokens_per_s(n, end_s),
    )


def tokens_per_s(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class JobTimes:
    """llm-wrap's times of a job (epoch seconds), from the X-Job-* headers or a stream's
    `llm_wrap_timings`."""

    accepted_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_mapping(cls, m: Mapping[str, object]) -> JobTimes | None:
        accepted = _number(m.get("accepted_at"))
        if accepted is None:
            return None
        return cls(accepted, _number(m.get("started_at")), _number(m.get("finished_at")))

    @classmethod
    def from_headers(cls, get: Mapping[str, str] | object) -> JobTimes | None:
        """From response headers (anything with a case-insensitive `.get`)."""
        getter = getattr(get, "get", None)
        if getter is None:
            return None
        return cls.from_mapping(
            {
                "accepted_at": getter("X-Job-Accepted-At"),
                "started_at": getter("X-Job-Started-At"),
                "finished_at": getter("X-Job-Finished-At"),
            }
        )

    def phases(self) -> tuple[float, float] | None:
        """(queue wait, generation) in seconds; None unless the job was started and finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, self.started_at - self.accepted_at), max(
            0.0, self.finished_at - self.started_at
        )


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
