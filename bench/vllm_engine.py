"""vLLM's engine called in-process: way (c) of bench/vllm_path.py. Runs in .venv-vllm.

    .venv-vllm/bin/python bench/vllm_engine.py MODEL MAX_MODEL_LEN ENGINE_ARGS_JSON LOG

Starts one AsyncLLM with the same arguments and usage context as the worker and vLLM's server,
then reads one JSON command per line on stdin, {"concurrency", "prompts", "max_tokens"}, runs the
prompts closed-loop at that concurrency (greedy, final output only, as the other two ways ask) and
prints `RESULT {"wall", "latencies", "tokens"}`. vLLM's own logs (and its engine process's) go
to LOG, so stdout carries only READY and the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any


async def drive(engine: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(
        temperature=0, max_tokens=cmd["max_tokens"], output_kind=RequestOutputKind.FINAL_ONLY
    )
    prompts: list[str] = cmd["prompts"]
    latencies: list[float] = []
    tokens = 0
    next_prompt = 0

    async def client() -> None:
        nonlocal tokens, next_prompt
        while next_prompt < len(prompts):
            prompt = prompts[next_prompt]
            next_prompt += 1
            started = time.perf_counter()
            async for out in engine.generate({"prompt": prompt}, params, uuid.uuid4().hex):
                final = out
            latencies.append(time.perf_counter() - started)
            tokens += len(final.outputs[0].token_ids)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(cmd["concurrency"])))
    return {"wall": time.perf_counter() - started, "latencies": latencies, "tokens": tokens}


async def main() -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    model, max_len, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    out = os.fdopen(os.dup(1), "w")  # results; fd 1 becomes the log, for vLLM's processes too
    os.dup2(os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_APPEND), 1)
    args = AsyncEngineArgs(model=model, max_model_len=max_len, **extra)
    engine = AsyncLLM.from_engine_args(args, usage_context=UsageContext.OPENAI_API_SERVER)
    loop = asyncio.get_running_loop()
    print("READY", file=out, flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        result = await drive(engine, json.loads(line))
        print("RESULT " + json.dumps(result), file=out, flush=True)
    engine.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
