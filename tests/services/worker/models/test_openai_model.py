"""The openai backend against a small OpenAI-compatible server this test runs (uvicorn, thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.protocol import (
    ChatMessage,
    FinishReason,
    JobKind,
    SamplingParams,
    TokenLogprob,
)
from services.worker.models.base import Generation, GenerationRequest, ModelError
from services.worker.models.openai_model import OpenAIModel
from tools.local.servers import free_port
from tools.local.stack import Stack

SEEN: list[dict] = []


def _upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        SEEN.append(body)
        if body.get("seed") == 400:  # what vLLM's server answers a request it refuses
            error = {"message": "seed 400 is refused here", "type": "BadRequestError"}
            return JSONResponse({"error": error}, status_code=400)
        if request.headers.get("authorization") != "Bearer sk-test":
            return {"choices": []}
        text = " | ".join(f"{m['role']}:{m['content']}" for m in body["messages"])
        logprobs = None
        if body.get("logprobs"):  # OpenAI's chat shape: an entry per token
            top = [{"token": "b", "logprob": -0.5, "bytes": [98]}][: body.get("top_logprobs", 0)]
            entry = {"token": text, "logprob": -0.25, "bytes": [], "top_logprobs": top}
            logprobs = {"content": [entry], "refusal": None}
        return {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": logprobs,
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        }

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict:
        body = await request.json()
        SEEN.append(body)
        choice: dict[str, Any] = {"index": 0, "text": f"completion of {body['prompt']} STOP tail"}
        if body.get("logprobs") is not None:  # the legacy shape: parallel lists
            choice["logprobs"] = {
                "tokens": ["completion", " of"],
                "token_logprobs": [-1.0, -2.0],
                "top_logprobs": [{"x": -3.0, "completion": -1.0, "y": -0.5}, {" of": -2.0}],
                "text_offset": [0, 10],
            }
        return {"choices": [choice]}

    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_upstream(), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


async def test_chat_and_completion_are_forwarded_in_openai_format(upstream: str) -> None:
    model = OpenAIModel(upstream, "served-name", api_key="sk-test")
    await model.load()
    params = SamplingParams(temperature=0.3, top_p=0.8, max_tokens=7, stop=["STOP"])
    chat = GenerationRequest(
        kind=JobKind.CHAT, params=params, messages=[ChatMessage(role="user", content="hi")]
    )
    # The upstream's finish reason and usage are kept.
    assert await model.generate(chat) == Generation("user:hi", FinishReason.LENGTH, 5, 7)
    sent = SEEN[-1]
    assert sent["model"] == "served-name" and sent["max_tokens"] == 7
    assert sent["temperature"] == 0.3 and sent["stop"] == ["STOP"] and sent["top_p"] == 0.8
    assert not {"seed", "presence_penalty", "top_k", "repetition_penalty"} & set(sent), "unset"
    completion = GenerationRequest(kind=JobKind.GENERATE, params=params, prompt="p")
    # The upstream ignored `stop`; the answer is still cut at it.
    # Cut there, the answer ended at a stop word; no usage sent, no counts.
    assert await model.generate(completion) == Generation("completion of p ", FinishReason.STOP)
    await model.close()


async def test_logprobs_are_asked_of_the_upstream_and_kept(upstream: str) -> None:
    """Chat asks with `logprobs` + `top_logprobs`, a completion with the legacy `logprobs` count;
    both answer shapes become the job's token logprobs (the legacy dict's likeliest first)."""
    model = OpenAIModel(upstream, "m", api_key="sk-test")
    await model.load()
    chat = GenerationRequest(
        kind=JobKind.CHAT,
        params=SamplingParams(logprobs=1),
        messages=[ChatMessage(role="user", content="hi")],
    )
    answer = await model.generate(chat)
    assert SEEN[-1]["logprobs"] is True and SEEN[-1]["top_logprobs"] == 1
    assert answer.logprobs == [TokenLogprob(token="user:hi", logprob=-0.25, top=[("b", -0.5)])]
    completion = GenerationRequest(
        kind=JobKind.GENERATE, params=SamplingParams(logprobs=2), prompt="p"
    )
    answer = await model.generate(completion)
    assert SEEN[-1]["logprobs"] == 2
    assert answer.logprobs == [
        TokenLogprob(token="completion", logprob=-1.0, top=[("y", -0.5), ("completion", -1.0)]),
        TokenLogprob(token=" of", logprob=-2.0, top=[(" of", -2.0)]),
    ]
    # Not asked: none asked of the upstream, none kept.
    plain = await model.generate(
        GenerationRequest(kind=JobKind.GENERATE, params=SamplingParams(), prompt="p")
    )
    assert "logprobs" not in SEEN[-1] and plain.logprobs is None
    await model.close()


async def test_an_upstream_answer_that_is_not_openai_format_is_a_model_error(
    upstream: str,
) -> None:
    model = OpenAIModel(upstream + "/v1", "m", api_key="wrong-key")
    await model.load()
    req = GenerationRequest(
        kind=JobKind.CHAT, params=SamplingParams(), messages=[ChatMessage(role="user", content="x")]
    )
    with pytest.raises(ModelError, match="not in OpenAI's format") as error:
        await model.generate(req)
    # The client's message names no address; the operator's detail (logged) does.
    assert upstream not in str(error.value) and upstream in (error.value.detail or "")
    await model.close()


def test_worker_forwards_end_to_end(stack: Stack, queue: str, upstream: str) -> None:
    stack.worker(queue, MODEL_BACKEND="openai", INNER_LLM_URL=upstream, INNER_LLM_API_KEY="sk-test")
    url = stack.backend(QUEUE_NAME=queue).url
    chat = {"messages": [{"role": "user", "content": "hello upstream"}]}
    r = httpx.post(url + "/chat_completion", json=chat, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json() == {"content": "user:hello upstream"}


def test_seed_and_penalties_reach_the_upstream(stack: Stack, queue: str, upstream: str) -> None:
    """Through /v1 to the upstream: the openai backend announces them, the backend lets them by."""
    stack.worker(queue, MODEL_BACKEND="openai", INNER_LLM_URL=upstream, INNER_LLM_API_KEY="sk-test")
    url = stack.backend(QUEUE_NAME=queue).url
    body = {
        "model": queue,
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -1.25,
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True},
        },
    }
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=20)
    assert r.status_code == 200, r.text
    sent = SEEN[-1]
    assert {k: sent[k] for k in body if k not in ("model", "messages")} == {
        k: v for k, v in body.items() if k not in ("model", "messages")
    }


def test_a_request_the_upstream_refuses_is_the_clients_error(
    stack: Stack, queue: str, upstream: str
) -> None:
    """The upstream's 400 and its message reach the client as a 400 (422 on the original
    endpoints), not as a model failure (502)."""
    stack.worker(queue, MODEL_BACKEND="openai", INNER_LLM_URL=upstream, INNER_LLM_API_KEY="sk-test")
    url = stack.backend(QUEUE_NAME=queue).url
    body = {"model": queue, "messages": [{"role": "user", "content": "hi"}], "seed": 400}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=20)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "the upstream model refused the request: seed 400 is refused here" in message
    assert upstream not in message
