"""vLLM called directly (its offline `LLM`, none of this project's code): the greedy reference.

    .venv-vllm/bin/python vllm_direct.py MODEL MAX_MODEL_LEN OUT < CASES

CASES is JSON: {"max_tokens": N, "prompts": [...], "chats": [[{"role", "content"}...], ...],
"sampled": [{"prompt": ..., and SamplingParams fields: temperature, seed, penalties...}, ...],
"structured": [{"messages": [...], and StructuredOutputsParams fields: json, json_object}, ...],
"logprobs": [{"prompt": ... or "messages": [...], "logprobs": K}, ...]}.
Writes JSON to OUT (vLLM logs to stdout): {"prompts": [text, ...], "chats": [...], "sampled":
[...], "structured": [...], "logprobs": [[[token, logprob, [[token, logprob], ...K likeliest]],
...], ...]}. The prompts, chats, structured chats and logprobs cases are greedy. Each case runs
alone (a batch of one), as the stack's answers are compared one at a time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    model, max_model_len = sys.argv[1], int(sys.argv[2])
    cases = json.load(sys.stdin)
    llm = LLM(model=model, max_model_len=max_model_len, enforce_eager=True, dtype="float32")
    params = SamplingParams(temperature=0, max_tokens=cases["max_tokens"])
    out = {
        "prompts": [llm.generate([p], params)[0].outputs[0].text for p in cases["prompts"]],
        "chats": [llm.chat([c], params)[0].outputs[0].text for c in cases["chats"]],
        "sampled": [
            llm.generate(
                [case.pop("prompt")], SamplingParams(max_tokens=cases["max_tokens"], **case)
            )[0]
            .outputs[0]
            .text
            for case in cases.get("sampled", [])
        ],
        "structured": [
            llm.chat(
                [case.pop("messages")],
                SamplingParams(
                    temperature=0,
                    max_tokens=cases["max_tokens"],
                    structured_outputs=StructuredOutputsParams(**case),
                ),
            )[0]
            .outputs[0]
            .text
            for case in cases.get("structured", [])
        ],
        "logprobs": [
            _logprobs(llm, case, cases["max_tokens"]) for case in cases.get("logprobs", [])
        ],
    }
    Path(sys.argv[3]).write_text(json.dumps(out))


def _logprobs(llm: Any, case: dict[str, Any], max_tokens: int) -> list[Any]:
    """Each generated token's text and logprob, with its K likeliest (by rank)."""
    from vllm import SamplingParams

    k = case["logprobs"]
    params = SamplingParams(temperature=0, max_tokens=max_tokens, logprobs=k)
    if "messages" in case:
        output = llm.chat([case["messages"]], params)[0].outputs[0]
    else:
        output = llm.generate([case["prompt"]], params)[0].outputs[0]
    found = []
    for token_id, at in zip(output.token_ids, output.logprobs, strict=True):
        chosen = at[token_id]
        top = sorted((lp.rank, lp.decoded_token, lp.logprob) for lp in at.values() if lp.rank <= k)
        found.append([chosen.decoded_token, chosen.logprob, [[t, lp] for _, t, lp in top]])
    return found


if __name__ == "__main__":
    main()
