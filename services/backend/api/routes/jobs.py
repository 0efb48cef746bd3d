"""The original protollm-api endpoints: generate from a prompt, or complete a chat."""

from fastapi import APIRouter

from services.backend.deps import JobServiceDep
from services.backend.schemas import ChatCompletionModel, PromptModel, ResponseModel
from services.common.protocol import JobKind, SamplingParams

# The API-key check is part of JobServiceDep: one dependency per request (see deps.py).
router = APIRouter(tags=["jobs"])


def _params(body: PromptModel | ChatCompletionModel) -> SamplingParams:
    m = body.meta
    return SamplingParams(temperature=m.temperature, max_tokens=m.tokens_limit, stop=m.stop_words)


@router.post("/generate", response_model=ResponseModel)
async def generate(
    body: PromptModel, jobs: JobServiceDep, queue_name: str | None = None
) -> ResponseModel:
    """Answer one prompt. `queue_name` (query) is the original SDK's way to pick a queue."""
    content = await jobs.run(
        kind=JobKind.GENERATE,
        model=body.meta.model,
        params=_params(body),
        prompt=body.content,
        priority=body.priority,
        client_job_id=body.job_id,
        queue=queue_name,
    )
    return ResponseModel(content=content)


@router.post("/chat_completion", response_model=ResponseModel)
async def chat_completion(
    body: ChatCompletionModel, jobs: JobServiceDep, queue_name: str | None = None
) -> ResponseModel:
    """Answer the next turn of a chat."""
    content = await jobs.run(
        kind=JobKind.CHAT,
        model=body.meta.model,
        params=_params(body),
        messages=body.messages,
        priority=body.priority,
        client_job_id=body.job_id,
        queue=queue_name,
    )
    return ResponseModel(content=content)
