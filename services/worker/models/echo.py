"""A deterministic model that answers with its input: for tests, demos and load tests.

Tokens are whitespace-separated words (with their leading whitespace). The answer is the prompt
(or the last chat message) truncated to `max_tokens` tokens and cut at the first stop word, so
each answer is recognisably its own request's. `ECHO_TOKEN_DELAY_MS` simulates generation speed.
"""

import asyncio
import re
from collections.abc import AsyncIterator

from services.worker.models.base import GenerationRequest, ModelBackend, cut_at_stop

_TOKEN = re.compile(r"\s*\S+")


class EchoModel(ModelBackend):
    def __init__(self, token_delay_ms: float = 0.0) -> None:
        self.delay = token_delay_ms / 1000.0

    @staticmethod
    def source_text(request: GenerationRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        return request.messages[-1].content if request.messages else ""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        text = cut_at_stop(self.source_text(request), request.params.stop)
        end = 0
        for i, match in enumerate(_TOKEN.finditer(text)):
            if i >= request.params.max_tokens:
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            end = match.end()
            yield match.group()
        if end < len(text):  # whitespace before a stop word or the end: part of the answer
            yield text[end:]

    async def generate(self, request: GenerationRequest) -> str:
        if self.delay:
            return await super().generate(request)
        # Instant path without a per-token coroutine switch: the load-test baseline.
        text = cut_at_stop(self.source_text(request), request.params.stop)
        limit = request.params.max_tokens
        tokens = _TOKEN.findall(text, 0)
        return text if len(tokens) <= limit else "".join(tokens[:limit])
