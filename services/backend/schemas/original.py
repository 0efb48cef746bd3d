"""Request and response bodies of the original protollm-api, accepted verbatim.

The original clients (ProtoLLM SDK, its LangChain connector) send `priority`, `source` and nulls
for optional meta fields: all accepted, `null` meaning the documented default.
"""

from typing import Annotated, Any

import orjson
from fastapi import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from services.common.protocol import ChatMessage


def none_to_default(default: Any) -> BeforeValidator:
    """A field whose `null` means its default (what the original clients and OpenAI SDKs send)."""
    return BeforeValidator(lambda v: default if v is None else v)


# Limits on what one request may ask for (bodies as a whole: MAX_BODY_BYTES). Stop words are
# matched against the whole answer, so their number and length bound that work.
MAX_TOKENS = 1_000_000
MAX_MESSAGES = 1000
MAX_STOP_WORDS = 16
MAX_STOP_WORD_CHARS = 256
StopWord = Annotated[str, Field(max_length=MAX_STOP_WORD_CHARS)]


class PromptMeta(BaseModel):
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False), none_to_default(0.2)] = (
        0.2
    )
    tokens_limit: Annotated[int, Field(gt=0, le=MAX_TOKENS), none_to_default(8096)] = 8096
    stop_words: Annotated[list[StopWord], Field(max_length=MAX_STOP_WORDS), none_to_default([])] = (
        Field(default_factory=list)
    )
    model: str | None = Field(None, max_length=256)


class _JobRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: str | None = Field(None, max_length=256)
    priority: int | None = None
    meta: Annotated[PromptMeta, none_to_default({})] = Field(default_factory=PromptMeta)


class PromptModel(_JobRequest):
    content: str


class ChatCompletionModel(_JobRequest):
    source: str | None = "local"
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)


class ResponseModel(BaseModel):
    content: str


def answer_response(content: str, headers: dict[str, str] | None = None) -> Response:
    """A ResponseModel body serialised directly: FastAPI would validate a returned model again
    (about 10 % of the HTTP layer's CPU per request). Routes keep `response_model` for the docs."""
    return Response(
        orjson.dumps({"content": content}), media_type="application/json", headers=headers
    )
