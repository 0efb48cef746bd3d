"""The HTTP-only floor for the core-path benchmark: the same uvicorn and the same request model,
answered in-process with no broker and no store, so the ratio isolates the cost of the queue
path."""

from fastapi import FastAPI

from services.backend.schemas import PromptModel, ResponseModel

app = FastAPI()


@app.post("/generate", response_model=ResponseModel)
async def generate(body: PromptModel) -> ResponseModel:
    return ResponseModel(content=body.content)
