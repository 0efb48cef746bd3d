"""The HTTP-only floor for the core-path benchmark: the same uvicorn, the same request model and
the same response serialisation and framework options as the backend, answered in-process with no
broker and no store, so the ratio isolates the cost of the queue path."""

from fastapi import FastAPI, Response

from services.backend.api.main import telemetry
from services.backend.schemas.original import PromptModel, ResponseModel, answer_response

app = FastAPI(telemetry=telemetry())


@app.post("/generate", response_model=ResponseModel)
async def generate(body: PromptModel) -> Response:
    return answer_response(body.content)
