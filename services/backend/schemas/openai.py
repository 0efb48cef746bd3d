"""OpenAI's request bodies (chat and text completions) and the answers built from a job.

Requests accept what OpenAI's API documents; unknown fields are ignored, as vLLM's server does.
A parameter no worker honours (tools, logit_bias...) is refused with a 400 naming it, never
silently dropped; `seed`, the penalties, vLLM's extras (`top_k`, `min_p`, `repetition_penalty`),
`logprobs` and a chat's JSON `response_format` go to the models whose workers announce them
(protocol.OPTIONAL_PARAMS), and get that 400 elsewhere. `n` choices are `n` jobs
(services/backend/choices.py).
`priority` is this server's extra field (the queue's AMQP priority, 0..10, higher first), passed
with the SDK's `extra_body`.

Answers are built as dicts and serialised with orjson (no second validation per response).
"""

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.backend.errors import BadRequest
from services.backend.schemas.original import (
    MAX_MESSAGES,
    MAX_STOP_WORDS,
    MAX_TOKENS,
    StopWord,
    none_to_default,
)
from services.common.protocol import (
    INT64,
    MAX_LOGPROBS,
    MAX_PRIORITY,
    OPTIONAL_PARAMS,
    ChatMessage,
    FinishReason,
    JobKind,
    JobMessage,
    JobOutcome,
    SamplingParams,
    TokenLogprob,
)

# A chat without max_tokens runs to the model's context (the worker clamps it); OpenAI's
# completions default is 16.
CHAT_MAX_TOKENS = 8096
COMPLETION_MAX_TOKENS = 16
# The most choices one request may ask for (`n`): each is a job of its own.
MAX_CHOICES = 16


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[Any] | None = None

    def plain(self, index: int) -> ChatMessage:
        if self.tool_calls:
            raise BadRequest("tool calls are not supported", f"messages[{index}].tool_calls")
        content = self.content
        if isinstance(content, list):
            if any(part.type != "text" for part in content):
                raise BadRequest(
                    "only text content parts are supported", f"messages[{index}].content"
                )
            content = "".join(part.text or "" for part in content)
        return ChatMessage(role=self.role, content=content or "")


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=256)
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False), none_to_default(1.0)] = (
        1.0
    )
    top_p: float | None = Field(None, gt=0, le=1)
    stop: StopWord | list[StopWord] | None = None
    stream: Annotated[bool, none_to_default(False)] = False
    stream_options: StreamOptions | None = None
    priority: int | None = Field(None, ge=0, le=MAX_PRIORITY)
    user: str | None = None
    # Choices to answer, each a job of its own (none given: one).
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES), none_to_default(1)] = 1
    # Accepted only with the values that mean "off" (see `refuse_unsupported`).
    logit_bias: dict[str, float] | None = None
    # Honoured where the model's workers announce them (JobService.accept checks).
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    # vLLM's extra sampling parameters (its server takes them beside OpenAI's): `extra_body`.
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)

    def stop_words(self) -> list[str]:
        words = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(words) > MAX_STOP_WORDS:
            raise BadRequest(f"at most {MAX_STOP_WORDS} stop sequences", "stop")
        return words

    def refuse_unsupported(self) -> None:
        """400 for what no worker does (rather than an answer that silently ignores it)."""
        if self.logit_bias:
            raise BadRequest("logit_bias is not supported", "logit_bias")
        if self.stream_options is not None and not self.stream:
            raise BadRequest("stream_options is only allowed with stream: true", "stream_options")

    def sampling(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=max_tokens,
            stop=self.stop_words(),
            **{
                name: getattr(self, name)
                for name in OPTIONAL_PARAMS
                if name not in ("response_format", "logprobs")
            },
            response_format=self.output_format(),
            logprobs=self.token_logprobs(),
        )

    def output_format(self) -> dict[str, Any] | None:
        """`response_format` as the job carries it; None for free text."""
        return None

    def token_logprobs(self) -> int | None:
        """How many alternatives per token the answer's logprobs list; None: no logprobs."""
        return None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_Request):
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.top_logprobs and not self.logprobs:
            raise BadRequest("top_logprobs needs logprobs: true", "top_logprobs")
        for name in ("tools", "functions"):
            if getattr(self, name):
                raise BadRequest(f"{name} (function calling) is not supported", name)
        if self.tool_choice not in (None, "none"):
            raise BadRequest("tool_choice is not supported", "tool_choice")

    def token_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def output_format(self) -> dict[str, Any] | None:
        """OpenAI's `response_format`, checked: None (text), a JSON object, or JSON following a
        schema. Models whose workers announce `response_format` honour it (vLLM's structured
        outputs); the schema itself is checked by the model."""
        given = self.response_format
        kind = given.get("type") if given is not None else "text"
        if kind == "text":
            return None
        if kind == "json_object":
            return {"type": "json_object"}
        spec = given.get("json_schema") if given is not None else None
        if kind != "json_schema":
            raise BadRequest(
                "response_format type must be text, json_object or json_schema", "response_format"
            )
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise BadRequest(
                "response_format json_schema needs json_schema.schema, a JSON Schema object",
                "response_format",
            )
        kept = {k: spec[k] for k in ("name", "description", "schema", "strict") if k in spec}
        return {"type": "json_schema", "json_schema": kept}

    def job(self) -> dict[str, Any]:
        """The job's fields (JobService.accept's arguments)."""
        self.refuse_unsupported()
        limit = self.max_completion_tokens or self.max_tokens or CHAT_MAX_TOKENS
        return {
            "kind": JobKind.CHAT,
            "model": self.model,
            "messages": [m.plain(i) for i, m in enumerate(self.messages)],
            "params": self.sampling(limit),
        }


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Annotated[
        int, Field(gt=0, le=MAX_TOKENS), none_to_default(COMPLETION_MAX_TOKENS)
    ] = COMPLETION_MAX_TOKENS
    # The chosen token's logprob and this many alternatives at each (0: the chosen one only).
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None

    def token_logprobs(self) -> int | None:
        return self.logprobs

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.echo:
            raise BadRequest("echo is not supported", "echo")
        if self.suffix:
            raise BadRequest("suffix is not supported", "suffix")
        if self.best_of not in (None, 1):
            raise BadRequest("best_of > 1 is not supported", "best_of")

    def prompt_text(self) -> str:
        prompt = self.prompt
        if isinstance(prompt, str):
            return prompt
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]
        if prompt and all(isinstance(p, str) for p in prompt):
            raise BadRequest("one prompt per request: send the others separately", "prompt")
        raise BadRequest("prompts must be text (token ids are not supported)", "prompt")

    def job(self) -> dict[str, Any]:
        self.refuse_unsupported()
        return {
            "kind": JobKind.GENERATE,
            "model": self.model,
            "prompt": self.prompt_text(),
            "params": self.sampling(self.max_tokens),
        }


def parse_job_request(body: dict[str, Any]) -> ChatCompletionRequest | CompletionRequest:
    """A `/v1/jobs` body: a chat (has `messages`) or a text completion (has `prompt`)."""
    if "messages" in body:
        return ChatCompletionRequest.model_validate(body)
    return CompletionRequest.model_validate(body)


# --- answers --------------------------------------------------------------------------------


def response_id(kind: JobKind, job_id: str) -> str:
    return f"{'chatcmpl' if kind is JobKind.CHAT else 'cmpl'}-{job_id}"


def usage(outcomes: list[JobOutcome]) -> dict[str, int] | None:
    """OpenAI's usage from the workers' token counts (None where a model cannot count): the
    prompt once, every choice's completion."""
    if any(o.prompt_tokens is None or o.completion_tokens is None for o in outcomes):
        return None
    prompt = outcomes[0].prompt_tokens or 0
    completion = sum(o.completion_tokens or 0 for o in outcomes)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8", "replace"))}


def chat_logprobs(logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """A chat choice's `logprobs`: one entry per token, its alternatives in `top_logprobs`."""
    if logprobs is None:
        return None
    content = [
        {**_token(lp.token, lp.logprob), "top_logprobs": [_token(*alt) for alt in lp.top]}
        for lp in logprobs
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(
    logprobs: list[TokenLogprob] | None, offset: int = 0
) -> dict[str, Any] | None:
    """A text completion's `logprobs` (the legacy shape: parallel lists). `offset`: where the
    first token starts in the answer's text (a stream's later chunks)."""
    if logprobs is None:
        return None
    offsets = []
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        # The chosen token with the alternatives, as OpenAI's legacy API lists them.
        "top_logprobs": [{lp.token: lp.logprob, **dict(lp.top)} for lp in logprobs],
        "text_offset": offsets,
    }


def answer(
    kind: JobKind, job_id: str, model: str, created: int, outcomes: list[JobOutcome]
) -> dict[str, Any]:
    """The non-streamed answer: `chat.completion` or `text_completion`, a choice per outcome."""
    choices = []
    for index, outcome in enumerate(outcomes):
        finish = (outcome.finish_reason or FinishReason.STOP).value
        text = outcome.content or ""
        if kind is JobKind.CHAT:
            choice: dict[str, Any] = {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": chat_logprobs(outcome.logprobs),
                "finish_reason": finish,
            }
        else:
            logprobs = completion_logprobs(outcome.logprobs)
            choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        choices.append(choice)
    body: dict[str, Any] = {
        "id": response_id(kind, job_id),
        "object": "chat.completion" if kind is JobKind.CHAT else "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if (counts := usage(outcomes)) is not None:
        body["usage"] = counts
    return body


class ChunkMaker:
    """The chunks of one choice of a streamed answer (`chat.completion.chunk` or
    `text_completion`). Every choice's chunks carry the response's id, its first job's."""

    def __init__(
        self,
        job: JobMessage,
        model: str,
        include_usage: bool,
        index: int = 0,
        first: JobMessage | None = None,
    ) -> None:
        self.job = job
        self.kind = kind = job.kind
        self.index = index
        self.base = {
            "id": response_id(kind, (first or job).job_id),
            "object": "chat.completion.chunk" if kind is JobKind.CHAT else "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        self.include_usage = include_usage
        # Where the next token starts in the answer (a streamed completion's text_offset).
        self.offset = 0

    def _chunk(self, choice: dict[str, Any] | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {**self.base, "choices": [choice] if choice is not None else []}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def first(self) -> dict[str, Any] | None:
        """A chat stream opens with the assistant's role (as OpenAI's does)."""
        if self.kind is not JobKind.CHAT:
            return None
        delta = {"role": "assistant", "content": ""}
        choice = {"index": self.index, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._chunk(choice)

    def text(
        self, text: str, finish: str | None = None, logprobs: list[TokenLogprob] | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": self.index}
        if self.kind is JobKind.CHAT:
            choice["delta"] = {"content": text} if text else {}
            choice["logprobs"] = chat_logprobs(logprobs)
        else:
            choice["text"] = text
            choice["logprobs"] = completion_logprobs(logprobs, self.offset)
            self.offset += sum(len(lp.token) for lp in logprobs or ())
        choice["finish_reason"] = finish
        return self._chunk(choice)

    def finishing(self, outcome: JobOutcome) -> dict[str, Any]:
        """The choice's last chunk, with its job's times (`llm_wrap_timings`, see
        api/headers.py)."""
        chunk = self.text("", (outcome.finish_reason or FinishReason.STOP).value)
        chunk["llm_wrap_timings"] = {
            "accepted_at": self.job.created_at,
            "started_at": outcome.started_at,
            "finished_at": outcome.finished_at,
        }
        return chunk

    def usage(self, outcomes: list[JobOutcome]) -> dict[str, Any]:
        """The usage chunk the client asked for (`stream_options.include_usage`), last."""
        return {**self.base, "choices": [], "usage": usage(outcomes)}
