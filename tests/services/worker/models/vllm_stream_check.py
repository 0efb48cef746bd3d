"""The vLLM backend's `stream` beside its `generate`, in-process (run by test_vllm_model.py).

    .venv-vllm/bin/python vllm_stream_check.py MODEL OUT

Writes JSON to OUT (vLLM logs to stdout): for each case, the streamed pieces with the time each
arrived, and the generated answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from services.common.protocol import ChatMessage, JobKind, SamplingParams
from services.worker.config import WorkerSettings
from services.worker.models.base import GenerationRequest
from services.worker.models.vllm_model import VLLMModel

CASES = [
    GenerationRequest(
        kind=JobKind.GENERATE,
        params=SamplingParams(temperature=0, max_tokens=200),
        prompt="what is ai",
    ),
    GenerationRequest(
        kind=JobKind.CHAT,
        params=SamplingParams(temperature=0, max_tokens=12),
        messages=[ChatMessage(role="user", content="hello")],
    ),
]


async def check(model_path: str) -> list[dict[str, object]]:
    settings = WorkerSettings(
        MODEL_BACKEND="vllm",
        MODEL_PATH=model_path,
        TOKENS_LEN=512,
        ENGINE_ARGS='{"enforce_eager": true, "dtype": "float32"}',
    )
    model = VLLMModel.from_settings(settings)
    await model.load()
    results: list[dict[str, object]] = []
    for case in CASES:
        started = time.perf_counter()
        pieces = [
            {
                "at": time.perf_counter() - started,
                "text": p.text,
                "finish_reason": p.finish_reason,
                "prompt_tokens": p.prompt_tokens,
                "completion_tokens": p.completion_tokens,
            }
            async for p in model.stream(case)
        ]
        g = await model.generate(case)
        results.append(
            {
                "pieces": pieces,
                "generated": {
                    "text": g.text,
                    "finish_reason": g.finish_reason,
                    "prompt_tokens": g.prompt_tokens,
                    "completion_tokens": g.completion_tokens,
                },
            }
        )
    await model.close()
    return results


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(asyncio.run(check(sys.argv[1]))))
