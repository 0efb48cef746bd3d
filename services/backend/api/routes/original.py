"""The original protollm-api endpoints: generate from a prompt, or complete a chat."""

from fastapi import APIRouter, Response

from services.backend.api.headers import job_headers
from services.backend.deps import OriginalCallDep
from services.backend.schemas.original import (
    ChatCompletionModel,
    PromptModel,
    ResponseModel,
    answer_response,
)
from services.backend.schemas.responses import ORIGINAL_RESPONSES
from services.common.protocol import JobKind, SamplingParams

# The API-key check and `?queue_name=` are part of OriginalCallDep: one dependency per request.
router = APIRouter(tags=["jobs"])


def _params(body: PromptModel | ChatCompletionModel) -> SamplingParams:
    m = body.meta
    return SamplingParams(temperature=m.temperature, max_tokens=m.tokens_limit, stop=m.stop_words)


@router.post(
    "/generate",
    response_model=ResponseModel,
    responses=ORIGINAL_RESPONSES,
)
async def generate(body: PromptModel, jobs: OriginalCallDep) -> Response:
    """Answer one prompt."""
    accepted = await jobs.service.accept(
        kind=JobKind.GENERATE,
        model=body.meta.model,
        params=_params(body),
        prompt=body.content,
        client_job_id=body.job_id,
        queue=jobs.queue,
        idempotency=jobs.idempotency,
    )
    outcome = await jobs.service.complete(accepted, body.priority)
    return answer_response(outcome.content or "", job_headers(accepted.job, outcome))


@router.post(
    "/chat_completion",
    response_model=ResponseModel,
    responses=ORIGINAL_RESPONSES,
)
async def chat_completion(body: ChatCompletionModel, jobs: OriginalCallDep) -> Response:
    """Answer the next turn of a chat."""
    accepted = await jobs.service.accept(
        kind=JobKind.CHAT,
        model=body.meta.model,
        params=_params(body),
        messages=body.messages,
        client_job_id=body.job_id,
        queue=jobs.queue,
        idempotency=jobs.idempotency,
    )
    outcome = await jobs.service.complete(accepted, body.priority)
    return answer_response(outcome.content or "", job_headers(accepted.job, outcome))
