"""The model interface every backend implements: load once, then stream or generate answers.

An answer streams as `Piece`s: new text as the model makes it, and on the last piece why it
ended and how many tokens it took. The worker stores the whole (`generate`); the pieces are what a
streaming client will be sent.
"""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.common.protocol import ChatMessage, FinishReason, JobKind, SamplingParams


class ModelError(Exception):
    """The model could not answer this request (reported to the client as 502 with the message)."""


class ModelDead(Exception):
    """The model can no longer answer anything (its engine died): the worker must exit.

    The job that met it is not failed: it goes back to the queue for a healthy worker.
    """


class ModelConfigError(ValueError):
    """A setting the model backend cannot use; the worker exits at start naming it."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    kind: JobKind
    params: SamplingParams
    prompt: str | None = None
    messages: list[ChatMessage] | None = None


@dataclass(frozen=True, slots=True)
class Piece:
    """One step of an answer. Only the last piece has `finish_reason` (its text may be empty).

    Token counts are set on the last piece, or None where the backend cannot count tokens.
    """

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """A whole answer: the text, why it ended and its token counts."""

    text: str
    finish_reason: FinishReason = FinishReason.STOP
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


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
    """A loaded model. `stream` yields pieces; `generate` returns the whole answer."""

    # How many requests the loaded model runs at once (vLLM: its max_num_seqs); the worker holds
    # that many jobs unless WORKER_CONCURRENCY says otherwise. None: no capacity of its own.
    capacity: int | None = None

    async def load(self) -> None:
        """Load weights / open clients; called once before the worker takes jobs."""

    @abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        """Yield the answer in pieces, already cut at stop words and limited to max_tokens."""

    async def generate(self, request: GenerationRequest) -> Generation:
        text: list[str] = []
        last = Piece("")
        async for piece in self.stream(request):
            text.append(piece.text)
            last = piece
        return Generation(
            "".join(text),
            last.finish_reason or FinishReason.STOP,
            last.prompt_tokens,
            last.completion_tokens,
        )

    def failure(self) -> str | None:
        """Why the model can no longer serve at all (e.g. its engine process died), else None.

        Polled by the worker, which exits when it is set.
        """
        return None

    async def close(self) -> None:
        """Release what `load` took."""
