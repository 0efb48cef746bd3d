"""The model interface every backend implements: load once, then stream or generate answers.

An answer streams as `Piece`s: new text as the model makes it, and on the last piece why it
ended and how many tokens it took. The worker stores the whole (`generate`); the pieces are what a
streaming client will be sent.
"""

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from functools import lru_cache

from services.common.protocol import (
    ChatMessage,
    FinishReason,
    JobKind,
    SamplingParams,
    TokenLogprob,
)


class ModelError(Exception):
    """The model could not answer this request (reported to the client as 502 with the message).

    The message is what the client reads: say what went wrong for them, nothing internal. What
    an operator needs (upstream addresses, exception text) goes in `detail`, which the worker
    logs with the job id.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class InvalidRequest(ModelError):
    """The model cannot run this request as asked: a prompt over its context, a schema it cannot
    follow. The client's error (422, 400 under /v1), not the model's (502)."""


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
    `logprobs`: the piece's tokens with their log-probabilities, when the request asked.
    """

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """A whole answer: the text, why it ended, its token counts (and logprobs when asked)."""

    text: str
    finish_reason: FinishReason = FinishReason.STOP
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[TokenLogprob] | None = None


class Answer:
    """Pieces put together into the whole answer (the default `generate`; a streamed job's
    stored answer)."""

    def __init__(self, request: GenerationRequest) -> None:
        self._text: list[str] = []
        # Asked: the tokens' logprobs (empty if none came); not asked: None.
        self._logprobs: list[TokenLogprob] | None = (
            [] if request.params.logprobs is not None else None
        )
        self._last = Piece("")

    def add(self, piece: Piece) -> None:
        self._text.append(piece.text)
        if piece.logprobs and self._logprobs is not None:
            self._logprobs.extend(piece.logprobs)
        self._last = piece

    def whole(self) -> Generation:
        last = self._last
        return Generation(
            "".join(self._text),
            last.finish_reason or FinishReason.STOP,
            last.prompt_tokens,
            last.completion_tokens,
            self._logprobs,
        )


# Up to this many stop words (the backend's limit) are searched one by one with `str.find`, in C
# and linear in the text for each; more are searched together in one pass of an Aho-Corasick
# automaton (`_Automaton`), linear in the text whatever the words.
FIND_EACH_MAX = 16


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Text up to (not including) the earliest stop word.

    Linear in the text: 10,000 stop words on a 1 MB text take about 1 s (0.5 to build the
    automaton, 0.4 to scan) where one `find` per word took 2 to 5 s, and adversarial words
    (`a...ab` on `aaaa...`) cost no more.
    """
    words = [w for w in stop if w]
    if not words:
        return text
    if len(words) > FIND_EACH_MAX:
        return text[: _automaton(tuple(words)).first(text)]
    cut = len(text)
    for word in words:
        # Only a match starting before the current cut can move it.
        i = text.find(word, 0, cut + len(word) - 1)
        if 0 <= i < cut:
            cut = i
    return text[:cut]


class _Automaton:
    """Aho-Corasick over a set of words: one pass over a text finds where the first one starts."""

    def __init__(self, words: tuple[str, ...]) -> None:
        goto: list[dict[str, int]] = [{}]
        # The longest word that ends at each state (0: none), via its suffix links as well.
        longest = [0]
        for word in words:
            state = 0
            for ch in word:
                nxt = goto[state].get(ch)
                if nxt is None:
                    nxt = len(goto)
                    goto.append({})
                    longest.append(0)
                    goto[state][ch] = nxt
                state = nxt
            longest[state] = len(word)
        fail = [0] * len(goto)
        todo = deque(goto[0].values())
        while todo:  # breadth first: a state's suffix link is settled before its children's
            state = todo.popleft()
            for ch, child in goto[state].items():
                todo.append(child)
                f = fail[state]
                while f and ch not in goto[f]:
                    f = fail[f]
                fail[child] = goto[f][ch] if state and ch in goto[f] else 0
                if not longest[child]:
                    longest[child] = longest[fail[child]]
        self._goto, self._fail, self._longest = goto, fail, longest
        self._max_len = max(len(w) for w in words)

    def first(self, text: str) -> int:
        """Where the earliest word starts in `text` (its length if none does)."""
        goto, fail, longest = self._goto, self._fail, self._longest
        best = len(text)
        state = 0
        for i, ch in enumerate(text):
            if i >= best + self._max_len - 1:
                break  # a word starting before `best` would have ended by now
            while True:
                nxt = goto[state].get(ch)
                if nxt is not None:
                    state = nxt
                    break
                if not state:
                    break
                state = fail[state]
            if longest[state]:
                best = min(best, i + 1 - longest[state])
        return best


@lru_cache(maxsize=16)
def _automaton(words: tuple[str, ...]) -> _Automaton:
    return _Automaton(words)


class ModelBackend(ABC):
    """A loaded model. `stream` yields pieces; `generate` returns the whole answer."""

    # How many requests the loaded model runs at once (vLLM: its max_num_seqs); the worker holds
    # that many jobs unless WORKER_CONCURRENCY says otherwise. None: no capacity of its own.
    capacity: int | None = None
    # The optional sampling parameters (protocol.OPTIONAL_PARAMS) this backend honours; the
    # worker announces them, and the backend refuses requests that set any other with a 400.
    params: frozenset[str] = frozenset()
    # The model's context in tokens, prompt and answer (vLLM's max_model_len), announced for
    # /v1/models. None: no context of its own (echo, an upstream).
    context: int | None = None

    async def load(self) -> None:
        """Load weights / open clients; called once before the worker takes jobs."""

    @abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        """Yield the answer in pieces, already cut at stop words and limited to max_tokens."""

    async def generate(self, request: GenerationRequest) -> Generation:
        answer = Answer(request)
        async for piece in self.stream(request):
            answer.add(piece)
        return answer.whole()

    def failure(self) -> str | None:
        """Why the model can no longer serve at all (e.g. its engine process died), else None.

        Polled by the worker, which exits when it is set.
        """
        return None

    async def close(self) -> None:
        """Release what `load` took."""
