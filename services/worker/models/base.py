"""The model interface every backend implements: load once, then stream or generate text."""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.common.protocol import ChatMessage, JobKind, SamplingParams


class ModelError(Exception):
    """The model could not answer this request (reported to the client as 502 with the message)."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    kind: JobKind
    params: SamplingParams
    prompt: str | None = None
    messages: list[ChatMessage] | None = None


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Text up to (not including) the earliest stop word."""
    cut = len(text)
    for word in stop:
        if word:
            i = text.find(word)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


class ModelBackend(ABC):
    """A loaded model. `stream` yields text pieces; `generate` returns the whole answer."""

    async def load(self) -> None:
        """Load weights / open clients; called once before the worker takes jobs."""

    @abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Yield the answer in pieces, already cut at stop words and limited to max_tokens."""

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([piece async for piece in self.stream(request)])

    async def close(self) -> None:
        """Release what `load` took."""
