"""A Hugging Face causal LM loaded from MODEL_PATH (CPU, or GPU when torch sees one).

Generation runs in a thread so the event loop keeps answering broker heartbeats; one generation at
a time per model (transformers' `generate` does not batch concurrent callers). An answer cut short
(stop word, deadline, cancel, closed stream) stops the model at its next token through a stopping
criterion, and the model's lock is held until the generation thread has really ended: a thread
cannot be killed, and a caller that gave up must not let the next job run beside it (twice the
GPU memory).

Tokens are streamed one by one with their text in context (`_Tokens`: incremental detokenising, as
vLLM's); asked for logprobs, each carries the model's raw distribution at its step (read from the
model's output by a forward hook, before any sampling setting: vLLM's default too).
"""

import asyncio
import queue
import threading
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from services.common.protocol import LOGPROB_FLOOR, FinishReason, TokenLogprob
from services.worker.models.base import (
    Generation,
    GenerationRequest,
    InvalidRequest,
    ModelBackend,
    ModelError,
    Piece,
    cut_at_stop,
)

T = TypeVar("T")


async def _join(work: "asyncio.Future[T]", halt: threading.Event) -> T:
    """Await a generation thread's `work` to its very end; a cancel sets `halt` (the thread
    stops at its next token) and is raised once the thread has ended.

    A cancelled `to_thread` would leave its thread running: the lock would be released while the
    model still generates.
    """
    cancelled: asyncio.CancelledError | None = None
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError as e:
            halt.set()
            cancelled = e
    if cancelled is not None:
        raise cancelled
    return work.result()


def _halt_criteria(halt: threading.Event) -> Any:
    """A stopping criterion that ends the generation at its next token once `halt` is set."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Halt(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            return halt.is_set()

    return StoppingCriteriaList([Halt()])


def _seed(seed: int | None) -> None:
    """A job's seed, set in its generation thread: sampling draws from torch's global generator,
    which one generation at a time uses (the model's lock)."""
    if seed is not None:
        import torch

        torch.manual_seed(seed)


class _Tokens:
    """A streamer for `generate` (it calls `put` with each new token, `end` at the end): each
    token's text in context and, when `alternatives` is set, its logprob and its likeliest
    alternatives', as (text, TokenLogprob | None) items of `items`, then None.

    Text by incremental detokenising over a window that starts a token back (as vLLM's and TGI's
    do): a token keeps its leading space, and one that ends inside a character gives "" until
    the token that completes it. The logprobs come from `hook`, a forward hook on the model that
    sees each step's raw logits just before the token they chose reaches `put`.
    """

    def __init__(self, tokenizer: Any, alternatives: int | None) -> None:
        self._tokenizer = tokenizer
        self._alternatives = alternatives
        self.items: queue.SimpleQueue[tuple[str, TokenLogprob | None] | None] = queue.SimpleQueue()
        self._ids: list[int] = []
        self._prefix = self._read = 0  # the window: ids[prefix:read] is text already given
        self._prompt = True
        self._rows: list[Any] = []  # each step's log-softmax, waiting for its token

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def hook(self, module: Any, args: Any, output: Any) -> None:
        if self._alternatives is not None:
            logits = output.logits if hasattr(output, "logits") else output[0]
            self._rows.append(logits[0, -1].float().log_softmax(-1))

    def put(self, value: Any) -> None:
        if self._prompt:  # the first call is the prompt
            self._prompt = False
            return
        for token in value.reshape(-1).tolist():
            self.items.put(self._step(int(token)))

    def _step(self, token: int) -> tuple[str, TokenLogprob | None]:
        before = self._decode(self._ids[self._prefix : self._read])
        window = self._ids[self._prefix :]
        self._ids.append(token)
        now = self._decode(self._ids[self._prefix :])
        text = ""
        if len(now) > len(before) and not now.endswith("\ufffd"):
            text = now[len(before) :]
            self._prefix, self._read = self._read, len(self._ids)
        if self._alternatives is None or not self._rows:
            return text, None
        row = self._rows.pop(0)
        top: list[tuple[str, float]] = []
        if self._alternatives:
            values, ids = row.topk(self._alternatives)
            for value, alt in zip(values.tolist(), ids.tolist(), strict=True):
                alt_text = self._decode([*window, alt])[len(before) :]
                top.append((alt_text, max(value, LOGPROB_FLOOR)))
        chosen = max(float(row[token]), LOGPROB_FLOOR)
        return text, TokenLogprob(token=text, logprob=chosen, top=top)

    def end(self) -> None:
        # Bytes held back for a character the answer never completed.
        rest = self._decode(self._ids[self._prefix :])[
            len(self._decode(self._ids[self._prefix : self._read])) :
        ]
        if rest:
            self.items.put((rest, None))
        self.items.put(None)


@contextmanager
def _hooked(model: Any, tokens: _Tokens) -> Iterator[None]:
    """`tokens.hook` on the model's forward for one generation (the model's lock is held)."""
    handle = model.register_forward_hook(tokens.hook)
    try:
        yield
    finally:
        handle.remove()


class TransformersModel(ModelBackend):
    # Penalties in OpenAI's sense (presence, frequency) are not transformers' `generate` options.
    params = frozenset({"seed", "top_k", "min_p", "repetition_penalty", "logprobs"})

    def __init__(self, path: str, max_len: int, device: str | None = None) -> None:
        self.path = path
        self.max_len = max_len
        self.context = max_len
        self.device = device
        self._lock = asyncio.Lock()
        self.model: Any = None
        self.tokenizer: Any = None

    async def load(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype="auto")
        self.model.to(self.device)
        self.model.eval()

    def _inputs(self, request: GenerationRequest) -> dict[str, Any]:
        if request.messages is not None:
            if not getattr(self.tokenizer, "chat_template", None):
                raise InvalidRequest("this model has no chat template; use /generate")
            enc = self.tokenizer.apply_chat_template(
                [m.model_dump() for m in request.messages],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
        else:
            enc = self.tokenizer(request.prompt or "", return_tensors="pt")
        return {
            k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")
        }

    def _generate_kwargs(
        self, request: GenerationRequest, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        prompt_len = int(inputs["input_ids"].shape[1])
        room = self.max_len - prompt_len
        if room <= 0:
            raise InvalidRequest(
                f"prompt has {prompt_len} tokens; "
                f"the model's context (TOKENS_LEN) is {self.max_len}"
            )
        p = request.params
        kwargs: dict[str, Any] = {
            **inputs,
            "max_new_tokens": min(p.max_tokens, room),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if p.repetition_penalty is not None:
            kwargs["repetition_penalty"] = p.repetition_penalty
        if p.temperature > 0:
            kwargs.update(do_sample=True, temperature=p.temperature)
            for name in ("top_p", "top_k", "min_p"):
                if (value := getattr(p, name)) is not None:
                    kwargs[name] = value
        else:
            kwargs.update(do_sample=False)
        return kwargs

    def _prepare(self, request: GenerationRequest) -> dict[str, Any]:
        return self._generate_kwargs(request, self._inputs(request))

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        halt = threading.Event()  # set when the answer is cut short or its caller goes away

        async with self._lock:
            # Tokenising (a chat template, a long prompt) is CPU work: off the event loop.
            kwargs = await asyncio.to_thread(self._prepare, request)
            prompt_len = int(kwargs["input_ids"].shape[1])
            tokens = _Tokens(self.tokenizer, request.params.logprobs)
            result: list[Any] = []
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    _seed(request.params.seed)
                    stopping = _halt_criteria(halt)
                    with _hooked(self.model, tokens):
                        result.append(
                            self.model.generate(
                                **kwargs, streamer=tokens, stopping_criteria=stopping
                            )
                        )
                except BaseException as e:  # surfaced to the caller below
                    errors.append(e)
                    tokens.items.put(None)

            generation = asyncio.ensure_future(asyncio.to_thread(run))
            text = ""
            stops = request.params.stop
            # A stop word ending in the new piece may begin in the text before it: search only
            # that tail, not the whole answer again at every piece.
            overlap = max(0, max((len(w) for w in stops), default=0) - 1)
            stopped = False
            try:
                while (item := await asyncio.to_thread(tokens.items.get)) is not None:
                    piece, logprob = item
                    logprobs = [logprob] if logprob is not None else None
                    start = max(0, len(text) - overlap)
                    cut = start + len(cut_at_stop(text[start:] + piece, stops))
                    if cut < len(text) + len(piece):
                        halt.set()
                        stopped = True
                        yield Piece(piece[: cut - len(text)], logprobs=logprobs)
                        break
                    text += piece
                    if piece or logprobs:
                        yield Piece(piece, logprobs=logprobs)
            finally:
                halt.set()  # a cancelled or closed stream stops the model at its next token
                await _join(generation, halt)
            if errors:
                raise ModelError(
                    "the model failed on this request", f"{type(errors[0]).__name__}: {errors[0]}"
                )
            generated = int(result[0].shape[1]) - prompt_len if result else 0
            yield Piece("", self._finish_reason(stopped, generated, kwargs), prompt_len, generated)

    @staticmethod
    def _finish_reason(stopped: bool, generated: int, kwargs: dict[str, Any]) -> FinishReason:
        if not stopped and generated >= kwargs["max_new_tokens"]:
            return FinishReason.LENGTH
        return FinishReason.STOP

    async def generate(self, request: GenerationRequest) -> Generation:
        halt = threading.Event()
        async with self._lock:
            work = asyncio.ensure_future(asyncio.to_thread(self._generate_sync, request, halt))
            return await _join(work, halt)

    def _generate_sync(self, request: GenerationRequest, halt: threading.Event) -> Generation:
        import torch

        kwargs = self._prepare(request)
        prompt_len = int(kwargs["input_ids"].shape[1])
        _seed(request.params.seed)
        tokens = None
        if request.params.logprobs is not None:
            tokens = _Tokens(self.tokenizer, request.params.logprobs)
            kwargs["streamer"] = tokens
        with torch.inference_mode(), _hooked(self.model, tokens) if tokens else nullcontext():
            out = self.model.generate(**kwargs, stopping_criteria=_halt_criteria(halt))
        new = out[0, prompt_len:]
        full = self.tokenizer.decode(new, skip_special_tokens=True)
        text = cut_at_stop(full, request.params.stop)
        stopped = len(text) < len(full)
        generated = int(new.shape[0])
        return Generation(
            text,
            self._finish_reason(stopped, generated, kwargs),
            prompt_len,
            generated,
            _drain(tokens) if tokens else None,
        )


def _drain(tokens: _Tokens) -> list[TokenLogprob]:
    """The logprobs a finished generation's tokens carried."""
    found = []
    while (item := tokens.items.get()) is not None:
        if item[1] is not None:
            found.append(item[1])
    return found
