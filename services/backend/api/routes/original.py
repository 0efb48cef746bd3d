"""The original protollm-api endpoints: generate from a prompt, or complete a chat."""

from fastapi import APIRouter, Response

from services.backend.deps import QUEUE_NAME_PARAMETER, JobTargetDep
from services.backend.schemas.original import (
    ChatCompletionModel,
    PromptModel,
    ResponseModel,
    answer_response,
)
from services.common.protocol import JobKind, SamplingParams

# The API-key check and `?queue_name=` are part of JobTargetDep: one dependency per request.
router = APIRouter(tags=["jobs"])
_QUERY = {"parameters": [QUEUE_NAME_PARAMETER]}


def _params(body: PromptModel | ChatCompletionModel) -> SamplingParams:
    m = body.meta
    return SamplingParams(temperature=m.temperature, max_tokens=m.tokens_limit, stop=m.stop_words)


@router.post("/generate", response_model=ResponseModel, openapi_extra=_QUERY)
async def generate(body: PromptModel, jobs: JobTargetDep) -> Response:
    """Answer one prompt."""
    content = await jobs.service.run(
        kind=JobKind.GENERATE,
        model=body.meta.model,
        params=_params(body),
        prompt=body.content,
        priority=body.priority,
        client_job_id=body.job_id,
        queue=jobs.queue,
    )
    return answer_response(content)


@router.post("/chat_completion", response_model=ResponseModel, openapi_extra=_QUERY)
async def chat_completion(body: ChatCompletionModel, jobs: JobTargetDep) -> Response:
    """Answer the next turn of a chat."""
    content = await jobs.service.run(
        kind=JobKind.CHAT,
        model=body.meta.model,
        params=_params(body),
        messages=body.messages,
        priority=body.priority,
        client_job_id=body.job_id,
        queue=jobs.queue,
    )
    return answer_response(content)
