"""What each route answers, for the OpenAPI schema only: error bodies, OpenAI's answers, jobs.

Routes build their answers as dicts serialised with orjson (schemas/openai.py), so nothing here
runs on a request: these models and the `responses=` tables exist so that `/openapi.json` says
which statuses each route can send and in what body (tests/services/backend/test_schemathesis.py
holds the running backend to it).
"""

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.common.protocol import FinishReason

# --- errors --------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """An original endpoint's error (FastAPI's shape)."""

    detail: str


class UnknownModelDetail(BaseModel):
    message: str
    known_models: list[str]


class UnknownModelBody(BaseModel):
    """404 from an original endpoint: the models (or, with `?queue_name=`, queues) known now."""

    detail: UnknownModelDetail


class FieldError(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class InvalidBody(BaseModel):
    """422 from an original endpoint: FastAPI's field-by-field list, or one message (text no
    UTF-8 can carry, an Idempotency-Key reused with another body)."""

    detail: list[FieldError] | str


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(BaseModel):
    """Every error under /v1 (OpenAI's body, so the openai SDK raises its typed exceptions)."""

    error: OpenAIError


class ReadyBody(BaseModel):
    status: Literal["ready"]


class NotReadyBody(BaseModel):
    detail: str
    down: list[str] = Field(description="the components that are unreachable")


# --- OpenAI's answers ----------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]
    refusal: None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = Field(description="set when the request asked (logprobs)")
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = Field(None, description="absent where the model cannot count tokens")


class TextLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: TextLogprobs | None = Field(description="set when the request asked (logprobs)")
    finish_reason: FinishReason


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = Field(None, description="absent where the model cannot count tokens")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    queue: str
    max_model_len: int | None = Field(
        description="the model's context in tokens (vLLM's field); null where it has none"
    )


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class JobAccepted(BaseModel):
    id: str
    object: Literal["job"]
    status: Literal["pending"]
    model: str
    created_at: float


class JobError(BaseModel):
    message: str
    code: str | None


class JobView(BaseModel):
    id: str
    object: Literal["job"]
    status: Literal["pending", "in_progress", "completed", "error", "cancelled"]
    model: str | None
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    waited_s: float | None = Field(
        description="time in the queue: until a worker took it, or so far"
    )
    result: ChatCompletion | TextCompletion | None = Field(description="when completed")
    error: JobError | None = Field(description="when error or cancelled")


# --- responses= tables ---------------------------------------------------------------------

# One event of a stream: `data:` holds a chunk (or, after the first text, an error) as JSON,
# and the last one `[DONE]`. (OpenAPI 3.1: an event stream's schema describes each event.)
_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}},
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "string"},
    }
}


def _errors(model: type[BaseModel], statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": model, "description": description}
        | ({"headers": _RETRY_AFTER} if status in (429, 503) else {})
        for status, description in statuses.items()
    }


_JOB_ERRORS = {
    401: "API_KEYS is set and no valid key was sent",
    404: "unknown model (or `?queue_name=` queue)",
    409: "the job was cancelled (DELETE /v1/jobs/{id}) before it finished",
    413: "the body is over MAX_BODY_BYTES",
    429: "the model's queue is full",
    502: "the model failed on this request",
    503: "RabbitMQ or Redis unreachable, or no live worker for the model",
    504: "no answer within JOB_TIMEOUT",
}

ORIGINAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_errors(ErrorBody, {400: "a body that is not text (FastAPI cannot decode it)"}),
    **_errors(ErrorBody, _JOB_ERRORS),
    404: {"model": UnknownModelBody, "description": _JOB_ERRORS[404]},
    422: {
        "model": InvalidBody,
        "description": "invalid body or query, text no UTF-8 can carry, an Idempotency-Key "
        "reused with another body",
    },
}

_OPENAI_ERRORS = {
    400: "invalid body, or a parameter no worker honours (named in `param`)",
    **_JOB_ERRORS,
}

COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_errors(OpenAIErrorBody, _OPENAI_ERRORS),
}

MODELS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ModelList},
    **_errors(OpenAIErrorBody, {401: _JOB_ERRORS[401]}),
}


def completion_responses(answer: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A completion route's: `answer` as JSON, or server-sent events with `stream: true`."""
    return {
        200: {
            "model": answer,
            "description": "the answer; with `stream: true`, server-sent events ending with "
            "`data: [DONE]`",
            "content": {"text/event-stream": {"schema": _EVENT}},
        },
        **COMPLETION_RESPONSES,
    }


JOB_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": JobAccepted, "description": "queued; read it back at `Location`"},
    **_errors(
        OpenAIErrorBody,
        {
            400: _OPENAI_ERRORS[400] + "; `stream: true`",
            401: _JOB_ERRORS[401],
            404: _JOB_ERRORS[404],
            413: _JOB_ERRORS[413],
            429: _JOB_ERRORS[429],
            503: _JOB_ERRORS[503],
        },
    ),
}

_JOB_READ_ERRORS = {
    401: _JOB_ERRORS[401],
    404: "no such job (or its record expired after RESULT_TTL)",
    503: "Redis unreachable",
}

JOB_STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobView},
    **_errors(OpenAIErrorBody, _JOB_READ_ERRORS),
}

JOB_CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": JobView, "description": "cancelled (now or before)"},
    **_errors(OpenAIErrorBody, {**_JOB_READ_ERRORS, 409: "the job had already finished"}),
}

READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ReadyBody},
    503: {"model": NotReadyBody, "description": "names each component that is down"},
}

# The route's response_class is text/plain, under which FastAPI would put a `model`: so its one
# JSON answer is spelled out.
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format"},
    401: {
        "description": "keys are set and PUBLIC_ENDPOINTS leaves out metrics",
        "content": {"application/json": {"schema": ErrorBody.model_json_schema()}},
    },
}
