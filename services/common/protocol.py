"""The job message (backend -> worker over RabbitMQ) and the outcome (worker -> backend over Redis).

Versioned with `v`: a worker refuses (and reports) a message of a version it does not know instead
of guessing. Serialised as JSON; field names are short-lived wire names, not public API.
"""

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROTOCOL_VERSION: Literal[1] = 1
# AMQP priorities are 0..MAX_PRIORITY; queues are declared with this `x-max-priority`.
MAX_PRIORITY = 10
DEFAULT_PRIORITY = 5


class JobStatus(StrEnum):
    """pending -> in_progress -> completed | error. `completed` and `error` are final."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ERROR = "error"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.ERROR})


class ErrorCode(StrEnum):
    """Why a job failed, so the backend maps it to the right HTTP status whoever recorded it.

    The worker and the backend both watch the deadline; whichever writes first, a deadline is a
    504, not a model error (502).
    """

    MODEL = "model"  # the model backend raised: 502 with its message
    DEADLINE = "deadline"  # not finished by the job's deadline: 504
    REJECTED = "rejected"  # never run: malformed, not accepted by the broker, too many tries
    CANCELLED = "cancelled"  # the client cancelled it (DELETE /v1/jobs/{id}, or went away)
    # The model cannot run this request as asked (a prompt over its context, a schema it cannot
    # follow): the client's error, 422 (400 under /v1), with the model's message.
    INVALID = "invalid"


class FinishReason(StrEnum):
    """Why an answer ended, in OpenAI's words."""

    STOP = "stop"  # the model ended it (end-of-sequence token) or a stop word did
    LENGTH = "length"  # tokens_limit, or the model's context, ran out


class JobKind(StrEnum):
    GENERATE = "generate"
    CHAT = "chat"


class ChatMessage(BaseModel):
    role: str
    content: str


# Sampling parameters not every model backend honours: a worker announces those its backend does
# (`ModelBackend.params`, in the registry), and the backend refuses a request that sets another
# with a 400 naming it, rather than let it be silently ignored. OpenAI's, then vLLM's own extras
# (which its server takes beside OpenAI's, as the SDK's `extra_body`).
OPTIONAL_PARAMS = (
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "min_p",
    "repetition_penalty",
    "response_format",
    "logprobs",
)
# The value of each that means "off": every model does that.
_OFF: dict[str, float | None] = {
    "seed": None,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "top_k": 0,
    "min_p": 0,
    "repetition_penalty": 1,
    "response_format": None,
    "logprobs": None,
}
INT64 = 2**63
# The most alternatives a job may ask for at each token (OpenAI's top_logprobs limit, and vLLM's
# default max_logprobs).
MAX_LOGPROBS = 20


class SamplingParams(BaseModel):
    """What the model needs to know about how to generate; defaults are the original API's."""

    temperature: float = Field(0.2, ge=0)
    # Nucleus sampling; None: the model's own default (its generation_config).
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(8096, gt=0)
    stop: list[str] = Field(default_factory=list)
    # OPTIONAL_PARAMS. None: not asked (the model's own default, from its generation_config).
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    # Sample from the k likeliest tokens only (0, or -1 as vLLM also takes: all of them).
    top_k: int | None = Field(None, ge=-1)
    # Drop tokens less likely than min_p times the likeliest one.
    min_p: float | None = Field(None, ge=0, le=1)
    # Divide the logits of tokens already in the prompt or the answer (1: off).
    repetition_penalty: float | None = Field(None, gt=0)
    # Constrained output, OpenAI's `response_format` as the client sent it: {"type": "json_object"}
    # or {"type": "json_schema", "json_schema": {"name", "schema", "strict"}} (checked by the
    # backend). None: free text.
    response_format: dict[str, Any] | None = None
    # Log-probabilities of the answer's tokens, with this many likeliest alternatives at each
    # (0: the chosen token's only). None: not asked.
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    @field_validator("top_k")
    @classmethod
    def _all_tokens(cls, value: int | None) -> int | None:
        return 0 if value == -1 else value

    def optional_asked(self) -> list[str]:
        """The OPTIONAL_PARAMS this request sets to something other than off."""
        return [
            name
            for name in OPTIONAL_PARAMS
            if (value := getattr(self, name)) is not None and value != _OFF[name]
        ]

    def optional_set(self) -> dict[str, float]:
        """top_p and the OPTIONAL_PARAMS that shape sampling (not the output's form:
        response_format, logprobs) this request gives, off included, by name."""
        return {
            name: value
            for name in ("top_p", *OPTIONAL_PARAMS)
            if name not in ("response_format", "logprobs")
            and (value := getattr(self, name)) is not None
        }


# The lowest logprob a model backend reports: JSON has no -inf (vLLM's server clamps the same way).
LOGPROB_FLOOR = -9999.0


class TokenLogprob(BaseModel):
    """One answer token: its text, its log-probability under the model, and (when asked) the
    likeliest tokens at its place with theirs, likeliest first."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = Field(default_factory=list)


class JobMessage(BaseModel):
    """One unit of work on a model's queue."""

    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = PROTOCOL_VERSION
    job_id: str
    kind: JobKind
    model: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    params: SamplingParams = Field(default_factory=SamplingParams)
    # Redis channel of the backend process waiting for this job ("" when nobody waits: an
    # async job, read back from its record).
    notify: str
    # Publish the answer's pieces as they are made (a Redis Stream per job, see store.py).
    stream: bool = False
    created_at: float
    # Epoch seconds after which nobody waits for the answer: the worker reports it failed instead.
    deadline: float
    client_job_id: str | None = None


class JobOutcome(BaseModel):
    """The final word on a job, stored in its hash and pushed to the waiting backend."""

    job_id: str
    status: Literal[JobStatus.COMPLETED, JobStatus.ERROR]
    content: str | None = None
    error: str | None = None
    code: ErrorCode | None = None
    # A completed job's: why it ended and its size in the model's own tokens (None where the
    # model cannot count them).
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # The answer's tokens with their log-probabilities, when the job asked (params.logprobs).
    logprobs: list[TokenLogprob] | None = None
    # When the worker started and finished it (epoch seconds on Redis' clock, see clock.py): the
    # backend's queue-wait and generation-time metrics.
    started_at: float | None = None
    finished_at: float | None = None
    # Set on a push whose answer was too large to carry (it stays in the record: read it there).
    in_record: bool = False
