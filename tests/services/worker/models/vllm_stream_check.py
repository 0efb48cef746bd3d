"""The vLLM backend's `stream` beside its `generate`, in-process (run by test_vllm_model.py).

    .venv-vllm/bin/python vllm_stream_check.py MODEL OUT

Writes JSON to OUT (vLLM logs to stdout): for each case, the streamed pieces with the time each
arrived, and the generated answer; then, for `generate` and `stream` each, what cancelling a long
generation did in the engine (the worker cancels the task that runs a job on DELETE, client
disconnect and deadline alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from services.common.protocol import ChatMessage, JobKind, SamplingParams, TokenLogprob
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
    GenerationRequest(
        kind=JobKind.CHAT,
        params=SamplingParams(temperature=0, max_tokens=12, logprobs=2),
        messages=[ChatMessage(role="user", content="how sure")],
    ),
]


def _dump(logprobs: list[TokenLogprob] | None) -> list[object] | None:
    return None if logprobs is None else [lp.model_dump(mode="json") for lp in logprobs]


async def check(model_path: str) -> dict[str, object]:
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
                "logprobs": _dump(p.logprobs),
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
                    "logprobs": _dump(g.logprobs),
                },
            }
        )
    aborted = {way: await cancelled(model, way) for way in ("generate", "stream")}
    await model.close()
    return {"cases": results, "aborted": aborted}


async def cancelled(model: VLLMModel, way: str) -> dict[str, object]:
    """Cancel a 400-token generation once the engine runs it: how many requests the engine
    holds when the cancelled task has ended, and whether it serves the next one."""
    engine = model._engine
    assert engine is not None
    long = GenerationRequest(
        kind=JobKind.GENERATE,
        params=SamplingParams(temperature=0, max_tokens=400),
        prompt="tell me everything",
    )

    reading = asyncio.Event()

    async def run() -> None:
        if way == "generate":  # cancelled while it waits inside vLLM's generator
            await model.generate(long)
            return
        # As the worker reads a stream: closed by aclosing, and cancelled while it is busy
        # between pieces (its Redis write), outside vLLM's generator.
        async with contextlib.aclosing(model.stream(long)) as pieces:
            async for _ in pieces:
                reading.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(run())
    deadline = time.perf_counter() + 30
    while engine.get_num_unfinished_requests() == 0:
        assert time.perf_counter() < deadline, "the engine never got the request"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # a few steps in
    if way == "stream":
        await asyncio.wait_for(reading.wait(), 30)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    # Read before any other await: the abort must have happened when the task ended, not
    # when the 400 tokens are done or a garbage collector closes the generator.
    left = engine.get_num_unfinished_requests()
    after = await model.generate(CASES[1])  # the engine still serves
    return {
        "cancelled": task.cancelled(),
        "unfinished_when_cancelled": left,
        "served_after": after.completion_tokens,
    }


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(asyncio.run(check(sys.argv[1]))))
