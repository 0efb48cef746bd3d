"""Reading an OpenAI-format stream of server-sent events as it arrives, timing each piece of text.

`StreamReader.feed(t, line)` takes each line with the time it was read; `result()` says what the
stream held: the text pieces and their times, whether `data: [DONE]` came, the usage chunk's token
count, llm-wrap's job times from the finishing chunk, and an error sent in-band. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from llmload.llm_metrics import JobTimes


@dataclass
class StreamRecord:
    pieces: list[tuple[float, str]] = field(default_factory=list)  # (seconds since sent, text)
    done: bool = False
    usage_tokens: int | None = None
    finish_reason: str | None = None
    timings: JobTimes | None = None
    error: str | None = None  # an error sent in the stream, after the status line

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.pieces)


class StreamReader:
    def __init__(self) -> None:
        self.record = StreamRecord()

    def feed(self, t: float, line: str | bytes) -> None:
        """One line of the body, read `t` seconds after the request was sent."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        line = line.strip()
        if not line.startswith("data:"):
            return  # blank separators, comments (': ping'), `event:` / `id:` fields
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.record.done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            self.record.error = f"not JSON: {payload[:80]!r}"
            return
        if not isinstance(chunk, dict):
            return
        self._chunk(t, chunk)

    def _chunk(self, t: float, chunk: dict[str, object]) -> None:
        rec = self.record
        if isinstance(error := chunk.get("error"), dict):
            rec.error = str(error.get("type") or error.get("code") or "error")
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            rec.usage_tokens = usage["completion_tokens"]
        if isinstance(times := chunk.get("llm_wrap_timings"), dict):
            rec.timings = JobTimes.from_mapping(times)
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str) and text:
                rec.pieces.append((t, text))
            if choice.get("finish_reason"):
                rec.finish_reason = str(choice["finish_reason"])

    def result(self) -> StreamRecord:
        return self.record
