"""A deterministic model that answers with its input: for tests, demos and load tests.

Tokens are whitespace-separated words (with their leading whitespace). The answer is the prompt
(or the last chat message) truncated to `max_tokens` tokens and cut at the first stop word, so
each answer is recognisably its own request's. `ECHO_TOKEN_DELAY_MS` simulates generation speed.
Token counts are in these words: the prompt's (its source text's) and the answer's. Asked for
logprobs, each word has log-probability 0 (the echo is certain) and is its own only alternative.
"""

import asyncio
import re
from collections.abc import AsyncGenerator

from services.common.protocol import FinishReason, TokenLogprob
from services.worker.models.base import (
    Generation,
    GenerationRequest,
    ModelBackend,
    Piece,
    cut_at_stop,
)

_TOKEN = re.compile(r"\s*\S+")


class EchoModel(ModelBackend):
    # Deterministic: any seed gives the same answer, so a seed is trivially honoured, and each
    # word is certain (logprobs). Penalties would change a real model's words, not the echo's:
    # refused rather than ignored.
    params = frozenset({"seed", "logprobs"})

    def __init__(self, token_delay_ms: float = 0.0) -> None:
        self.delay = token_delay_ms / 1000.0

    @staticmethod
    def source_text(request: GenerationRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        return request.messages[-1].content if request.messages else ""

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        source = self.source_text(request)
        text = cut_at_stop(source, request.params.stop)
        limit = request.params.max_tokens
        alternatives = request.params.logprobs
        end = n = 0
        for match in _TOKEN.finditer(text):
            if n >= limit:
                yield self._last(source, n, FinishReason.LENGTH)
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            end = match.end()
            n += 1
            word = match.group()
            if alternatives is None:
                yield Piece(word)
            else:
                top = [(word, 0.0)] if alternatives else []
                yield Piece(word, logprobs=[TokenLogprob(token=word, logprob=0.0, top=top)])
        # Whitespace before a stop word or the end is part of the answer.
        yield self._last(source, n, FinishReason.STOP, text[end:])

    @staticmethod
    def _last(source: str, n: int, reason: FinishReason, text: str = "") -> Piece:
        return Piece(text, reason, len(_TOKEN.findall(source)), n)

    async def generate(self, request: GenerationRequest) -> Generation:
        if self.delay or request.params.logprobs is not None:
            return await super().generate(request)
        # Instant path without a per-token coroutine switch: the load-test baseline.
        source = self.source_text(request)
        text = cut_at_stop(source, request.params.stop)
        limit = request.params.max_tokens
        tokens = _TOKEN.findall(text)
        prompt_tokens = len(_TOKEN.findall(source)) if len(text) < len(source) else len(tokens)
        if len(tokens) <= limit:
            return Generation(text, FinishReason.STOP, prompt_tokens, len(tokens))
        return Generation("".join(tokens[:limit]), FinishReason.LENGTH, prompt_tokens, limit)
