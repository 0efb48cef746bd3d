"""The OpenAI-compatible API through the official `openai` SDK, unchanged: real uvicorn backend,
real echo workers, real Redis and RabbitMQ. Streaming is timed, cancellation is checked at the
worker (it stops generating), errors are the SDK's typed exceptions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tools.local.stack import Proc, Stack

WORDS = " ".join(f"w{i}" for i in range(12))


_clients: list[openai.OpenAI] = []


def client(url: str, key: str = "none") -> openai.OpenAI:
    """The SDK as an application configures it (closed at the end of the test)."""
    # max_retries=0: the SDK retries 429 and 5xx by default, which would hide the status.
    sdk = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=20)
    _clients.append(sdk)
    return sdk


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


@pytest.fixture
def echo(stack: Stack, queue: str) -> str:
    stack.worker(queue, MODEL_NAME="echo-7b", MODEL_ALIASES="gpt-4o-mini")
    return stack.backend(QUEUE_NAME=queue).url


def test_models_lists_every_name_of_every_live_worker(echo: str) -> None:
    models = client(echo).models.list().data
    assert [m.id for m in models] == ["echo-7b", "gpt-4o-mini"]
    # The echo has no context of its own (a vLLM or transformers worker says its max_model_len).
    assert all((m.model_extra or {})["max_model_len"] is None for m in models)


def test_chat_completion_has_openais_shape_and_the_workers_token_counts(echo: str) -> None:
    chat = client(echo).chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is AI"},
        ],
    )
    assert chat.object == "chat.completion" and chat.id.startswith("chatcmpl-")
    assert chat.model == "gpt-4o-mini" and chat.created > 0
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == "what is AI"
    assert chat.choices[0].finish_reason == "stop"
    assert chat.usage is not None
    # The echo model's tokens are words: the last message's three, answered in full.
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (3, 3)
    assert chat.usage.total_tokens == 6


def test_completion_stops_at_max_tokens_with_finish_reason_length(echo: str) -> None:
    done = client(echo).completions.create(
        model="echo-7b", prompt="one two three four", max_tokens=2
    )
    assert done.object == "text_completion" and done.id.startswith("cmpl-")
    assert done.choices[0].text == "one two"
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 2
    # Text content parts and a stop word, as the SDK sends them.
    chat = client(echo).chat.completions.create(
        model="echo-7b",
        messages=[{"role": "user", "content": [{"type": "text", "text": "alpha beta STOP gamma"}]}],
        stop="STOP",
    )
    assert chat.choices[0].message.content == "alpha beta "


def test_stream_chunks_arrive_as_tokens_are_generated(stack: Stack, queue: str) -> None:
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=100)
    url = stack.backend(QUEUE_NAME=queue).url
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    chunks = []
    stream = client(url).chat.completions.create(
        model=queue,
        messages=[{"role": "user", "content": WORDS}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == WORDS
    # 12 tokens 100 ms apart: the first arrives about a second before the last, in many chunks.
    assert len(arrivals) >= 6, arrivals
    assert arrivals[-1][0] - arrivals[0][0] >= 0.7, arrivals
    assert arrivals[0][0] < 0.6, arrivals
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    # include_usage: a last chunk with no choices and the usage.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_wire_format_ends_with_done(echo: str) -> None:
    body = {"model": "echo-7b", "prompt": "a b c", "stream": True}
    with httpx.stream("POST", echo + "/v1/completions", json=body, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert '"object":"text_completion"' in events[0]


def test_errors_are_the_sdks_typed_exceptions(stack: Stack, queue: str) -> None:
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=400)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=1).url
    sdk = client(url)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as e404:
        sdk.chat.completions.create(model="no-such-model", messages=messages)
    assert e404.value.code == "model_not_found" and queue in e404.value.message
    with pytest.raises(openai.BadRequestError) as e400:
        sdk.chat.completions.create(model=queue, messages=messages, n=17)
    assert e400.value.param == "n"
    for unsupported in (
        {"logit_bias": {"1": 1.0}},
        {"tools": [{"type": "function", "function": {}}]},
    ):
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model=queue, messages=messages, **unsupported)
    with pytest.raises(openai.BadRequestError) as bad_value:
        sdk.chat.completions.create(model=queue, messages=messages, temperature=5)
    assert bad_value.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as bad_priority:
        sdk.chat.completions.create(model=queue, messages=messages, extra_body={"priority": 11})
    assert bad_priority.value.param == "priority"
    # Eight tokens at 400 ms against a 1 s deadline: 504, streamed or not.
    long = [{"role": "user", "content": "a b c d e f g h"}]
    with pytest.raises(openai.APIStatusError) as e504:
        sdk.chat.completions.create(model=queue, messages=long)
    assert e504.value.status_code == 504 and e504.value.code == "timeout"
    with pytest.raises(openai.APIError):
        for _ in sdk.chat.completions.create(model=queue, messages=long, stream=True):
            pass


def test_seed_and_penalties_are_refused_where_the_model_cannot_honour_them(
    stack: Stack, queue: str
) -> None:
    """The echo worker announces `seed` (its answers are the same whatever the seed), not the
    penalties, which would change a real model's words: a 400 naming the parameter, not silence."""
    stack.worker(queue)
    sdk = client(stack.backend(QUEUE_NAME=queue).url)
    messages = [{"role": "user", "content": "same words"}]
    chat = sdk.chat.completions.create(model=queue, messages=messages, seed=7)
    assert chat.choices[0].message.content == "same words"
    # A penalty of 0 is off, which every model does; so are vLLM's top_k 0 and -1 and a
    # repetition_penalty of 1.
    for off in (
        {"presence_penalty": 0},
        {"extra_body": {"top_k": -1, "min_p": 0, "repetition_penalty": 1}},
    ):
        answer = sdk.chat.completions.create(model=queue, messages=messages, **off)  # type: ignore[call-overload]
        assert answer.choices[0].message.content == "same words"
    for name, value in (("top_k", 5), ("min_p", 0.1), ("repetition_penalty", 1.2)):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.completions.create(model=queue, prompt="x", extra_body={name: value})
        assert refused.value.param == name and "MODEL_BACKEND=echo" in refused.value.message
    for name in ("presence_penalty", "frequency_penalty"):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model=queue, messages=messages, **{name: 0.5})
        assert refused.value.param == name
        assert "MODEL_BACKEND=echo" in refused.value.message and queue in refused.value.message
        with pytest.raises(openai.BadRequestError) as out_of_range:
            sdk.completions.create(model=queue, prompt="x", **{name: 2.5})
        assert out_of_range.value.param == name
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.completions.create(model=queue, prompt="x", frequency_penalty=1)
    assert refused.value.param == "frequency_penalty"
    # A JSON response_format: for models whose workers follow one (vLLM), not the echo.
    plain = sdk.chat.completions.create(
        model=queue, messages=messages, response_format={"type": "text"}
    )
    assert plain.choices[0].message.content == "same words"
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    for fmt in ({"type": "json_object"}, schema):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model=queue, messages=messages, response_format=fmt)  # type: ignore[arg-type]
        assert refused.value.param == "response_format"
        assert "MODEL_BACKEND=echo" in refused.value.message
    for bad in ({"type": "xml"}, {"type": "json_schema", "json_schema": {"name": "a"}}):
        with pytest.raises(openai.BadRequestError) as malformed:
            sdk.chat.completions.create(model=queue, messages=messages, response_format=bad)  # type: ignore[arg-type]
        assert malformed.value.param == "response_format" and "json" in malformed.value.message


def test_no_worker_is_503_and_a_full_queue_is_429(stack: Stack, queue: str) -> None:
    worker = stack.worker(queue, QUEUE_MAX_LENGTH=1, WORKER_CONCURRENCY=1, ECHO_TOKEN_DELAY_MS=300)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url

    async def flood() -> list[openai.APIStatusError | None]:
        async with openai.AsyncOpenAI(
            base_url=url + "/v1", api_key="x", max_retries=0, timeout=30
        ) as sdk:

            async def one(i: int) -> openai.APIStatusError | None:
                try:
                    await sdk.completions.create(model=queue, prompt=f"w{i} x y", max_tokens=5)
                except openai.APIStatusError as e:
                    return e
                return None

            return await asyncio.gather(*(one(i) for i in range(6)))

    errors = [e for e in asyncio.run(flood()) if e is not None]
    assert errors and all(isinstance(e, openai.RateLimitError) for e in errors), errors
    assert errors[0].response.headers["retry-after"] == "1"
    assert errors[0].code == "queue_full"
    worker.stop()
    time.sleep(0.5)
    with pytest.raises(openai.InternalServerError) as e503:
        client(url).completions.create(model=queue, prompt="x")
    assert e503.value.status_code == 503 and e503.value.code == "no_live_worker"


def test_api_keys_guard_every_v1_route_and_reload_from_their_file(
    stack: Stack, queue: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# one key per line\nfirst-key\n")
    stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue, API_KEYS="static-key", API_KEYS_FILE=keys).url
    with pytest.raises(openai.AuthenticationError):
        client(url).models.list()
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong").completions.create(model=queue, prompt="x")
    for path in ("/v1/jobs/abc", "/v1/models"):
        r = httpx.get(url + path)  # curl without a key
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert [m.id for m in client(url, "static-key").models.list()] == [queue]
    assert httpx.get(url + "/v1/models", headers={"X-API-Key": "first-key"}).status_code == 200
    # Revoke one key and add another without a restart.
    keys.write_text("second-key\n")
    deadline = time.monotonic() + 5
    while client_ok(url, "first-key") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not client_ok(url, "first-key")
    assert client_ok(url, "second-key") and client_ok(url, "static-key")
    # The original endpoints use the same keys.
    headers = {"Authorization": "Bearer second-key"}
    assert httpx.post(url + "/generate", json={"content": "x"}, headers=headers).status_code == 200


def client_ok(url: str, key: str) -> bool:
    r = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    return r.status_code == 200


def test_logprobs_in_openais_shapes_streamed_or_not(stack: Stack, queue: str) -> None:
    """The echo worker announces logprobs (each word certain: 0, its own only alternative); the
    SDK reads them in both endpoints' shapes, whole or chunk by chunk as the tokens come."""
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=20)
    url = stack.backend(QUEUE_NAME=queue).url
    sdk = client(url)
    words = ["alpha", " beta", " gamma"]
    messages = [{"role": "user", "content": "alpha beta gamma"}]
    chat = sdk.chat.completions.create(
        model=queue, messages=messages, logprobs=True, top_logprobs=2
    )
    assert chat.choices[0].logprobs is not None and chat.choices[0].logprobs.content is not None
    content = chat.choices[0].logprobs.content
    assert [(t.token, t.logprob, t.bytes) for t in content] == [
        (w, 0.0, list(w.encode())) for w in words
    ]
    assert [[(a.token, a.logprob) for a in t.top_logprobs] for t in content] == [
        [(w, 0.0)] for w in words
    ]
    # logprobs without top_logprobs: the chosen tokens only; not asked: none.
    bare = sdk.chat.completions.create(model=queue, messages=messages, logprobs=True)
    assert bare.choices[0].logprobs is not None and bare.choices[0].logprobs.content is not None
    assert [t.top_logprobs for t in bare.choices[0].logprobs.content] == [[], [], []]
    plain = sdk.chat.completions.create(model=queue, messages=messages)
    assert plain.choices[0].logprobs is None

    # Streamed: each chunk carries the logprobs of its own text, all of them in order.
    streamed = []
    for chunk in sdk.chat.completions.create(
        model=queue, messages=messages, logprobs=True, stream=True
    ):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            tokens = [t.token for t in chunk.choices[0].logprobs.content]
            assert "".join(tokens) == chunk.choices[0].delta.content
            streamed += tokens
    assert streamed == words

    # Completions: the legacy parallel lists, offsets into the answer's text.
    done = sdk.completions.create(model=queue, prompt="alpha beta gamma", logprobs=1, max_tokens=2)
    legacy = done.choices[0].logprobs
    assert legacy is not None and done.choices[0].text == "alpha beta"
    assert legacy.tokens == words[:2] and legacy.token_logprobs == [0.0, 0.0]
    assert legacy.top_logprobs == [{"alpha": 0.0}, {" beta": 0.0}]
    assert legacy.text_offset == [0, 5]
    offsets: list[int] = []
    for chunk in sdk.completions.create(
        model=queue, prompt="alpha beta gamma", logprobs=0, stream=True
    ):
        if chunk.choices and chunk.choices[0].logprobs:
            offsets += chunk.choices[0].logprobs.text_offset or []
    assert offsets == [0, 5, 10]

    # An async job keeps them in its record.
    job = httpx.post(
        url + "/v1/jobs", json={"model": queue, "messages": messages, "logprobs": True}
    ).json()
    result = wait_for_status(url, job["id"], {"completed"})["result"]
    assert [t["token"] for t in result["choices"][0]["logprobs"]["content"]] == words

    # top_logprobs needs logprobs, as OpenAI's API says; at most 20.
    for bad in ({"top_logprobs": 2}, {"logprobs": True, "top_logprobs": 21}):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model=queue, messages=messages, **bad)  # type: ignore[call-overload]
        assert refused.value.param == "top_logprobs"


def test_n_choices_are_a_job_each_run_at_once(stack: Stack, queue: str) -> None:
    """`n`: one job per choice, spread over the workers (two here, one job at a time each: the
    choices' generations overlap), answered together, streamed or not."""
    for _ in range(2):
        stack.worker(queue, WORKER_CONCURRENCY=1, ECHO_TOKEN_DELAY_MS=30)
    url = stack.backend(QUEUE_NAME=queue).url
    sdk = client(url)
    messages = [{"role": "user", "content": "one two three"}]
    chat = sdk.chat.completions.create(model=queue, messages=messages, n=3, logprobs=True)
    assert [c.index for c in chat.choices] == [0, 1, 2]
    assert [c.message.content for c in chat.choices] == ["one two three"] * 3
    assert all(
        c.logprobs and c.logprobs.content and len(c.logprobs.content) == 3 for c in chat.choices
    )
    # The prompt counted once, every choice's tokens.
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (3, 9)

    chunks = list(
        sdk.completions.create(
            model=queue,
            prompt="a b c d e f",
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len({c.id for c in chunks}) == 1
    texts = {0: "", 1: ""}
    timings = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        texts[choice.index] += choice.text
        if choice.finish_reason:
            timings[choice.index] = (chunk.model_extra or {})["llm_wrap_timings"]
    assert texts == {0: "a b c d e f", 1: "a b c d e f"}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    # Two workers, one job each at a time: the two choices were generated at once.
    first, second = timings[0], timings[1]
    assert (
        first["started_at"] < second["finished_at"] and second["started_at"] < first["finished_at"]
    )
    # An async job is one choice.
    r = httpx.post(url + "/v1/jobs", json={"model": queue, "prompt": "x", "n": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    # A retried request (the same Idempotency-Key) gets the first one's choices, not new jobs.
    retried = [
        httpx.post(
            url + "/v1/completions",
            json={"model": queue, "prompt": "x y", "n": 2},
            headers={"Idempotency-Key": "choices-1"},
        ).json()
        for _ in range(2)
    ]
    assert retried[0] == retried[1] and len(retried[0]["choices"]) == 2


def test_a_client_that_leaves_cancels_every_choice(stack: Stack, queue: str) -> None:
    worker = stack.worker(queue, WORKER_CONCURRENCY=2, ECHO_TOKEN_DELAY_MS=100)
    url = stack.backend(QUEUE_NAME=queue).url
    body = {"model": queue, "prompt": " ".join(["w"] * 100), "max_tokens": 100, "n": 2}
    with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}) as r:
        received = 0
        for line in r.iter_lines():
            received += line.startswith("data: ")
            if received == 4:
                break  # leaving the block closes the connection
    deadline = time.monotonic() + 5
    while worker.output().count("cancelled: generation stopped") < 2:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)


def test_async_job_from_submit_to_result(echo: str) -> None:
    body = {"model": "echo-7b", "messages": [{"role": "user", "content": "later please"}]}
    r = httpx.post(echo + "/v1/jobs", json=body, headers={"Idempotency-Key": "x"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "pending" and r.headers["location"] == f"/v1/jobs/{job['id']}"
    view = wait_for_status(echo, job["id"], {"completed"})
    assert view["result"]["choices"][0]["message"]["content"] == "later please"
    assert view["result"]["usage"]["completion_tokens"] == 2
    assert view["created_at"] <= view["started_at"] <= view["finished_at"]
    assert view["waited_s"] >= 0 and view["error"] is None
    done = httpx.post(
        echo + "/v1/jobs", json={"model": "echo-7b", "prompt": "p q r", "max_tokens": 1}
    ).json()
    assert wait_for_status(echo, done["id"], {"completed"})["result"]["choices"][0]["text"] == "p"
    assert httpx.get(echo + "/v1/jobs/" + "0" * 32).status_code == 404
    assert httpx.delete(echo + "/v1/jobs/" + done["id"]).status_code == 409
    bad = httpx.post(echo + "/v1/jobs", json={"model": "echo-7b", "messages": []})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"


def wait_for_status(url: str, job_id: str, wanted: set[str], timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        if view["status"] in wanted or time.monotonic() > deadline:
            assert view["status"] in wanted, view
            return view
        time.sleep(0.05)


def slow_worker(stack: Stack, queue: str) -> Proc:
    """One job at a time, 100 ms a token: a cancelled job that kept running would hold the next
    one back by seconds."""
    return stack.worker(queue, WORKER_CONCURRENCY=1, ECHO_TOKEN_DELAY_MS=100)


def assert_stops_generating(url: str, worker: Proc, queue: str) -> None:
    """The worker logged the stop, and is free at once for the next job."""
    deadline = time.monotonic() + 5
    while "cancelled: generation stopped" not in worker.output():
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    started = time.monotonic()
    quick = client(url).completions.create(model=queue, prompt="quick", max_tokens=1)
    assert quick.choices[0].text == "quick"
    assert time.monotonic() - started < 1.5


def test_delete_cancels_a_running_job_and_the_worker_stops(stack: Stack, queue: str) -> None:
    worker = slow_worker(stack, queue)
    url = stack.backend(QUEUE_NAME=queue).url
    long = " ".join(["word"] * 100)  # 10 s of generation
    job = httpx.post(url + "/v1/jobs", json={"model": queue, "prompt": long, "max_tokens": 100})
    job_id = job.json()["id"]
    wait_for_status(url, job_id, {"in_progress"})
    r = httpx.delete(f"{url}/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert_stops_generating(url, worker, queue)
    assert httpx.delete(f"{url}/v1/jobs/{job_id}").status_code == 200  # again: still cancelled
    assert httpx.get(f"{url}/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_a_cancelled_queued_job_is_skipped(stack: Stack, queue: str) -> None:
    worker = slow_worker(stack, queue)
    url = stack.backend(QUEUE_NAME=queue).url
    running = httpx.post(url + "/v1/jobs", json={"model": queue, "prompt": "a b c d e f g h"})
    queued = httpx.post(url + "/v1/jobs", json={"model": queue, "prompt": "never runs"})
    queued_id = queued.json()["id"]
    assert httpx.delete(f"{url}/v1/jobs/{queued_id}").json()["status"] == "cancelled"
    wait_for_status(url, running.json()["id"], {"completed"})
    deadline = time.monotonic() + 5
    while f"job {queued_id} error" not in worker.output():
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    assert f"job {queued_id} started" in worker.output()
    view = httpx.get(f"{url}/v1/jobs/{queued_id}").json()
    assert view["status"] == "cancelled" and view["result"] is None


def test_a_client_that_disconnects_from_a_stream_cancels_its_job(stack: Stack, queue: str) -> None:
    worker = slow_worker(stack, queue)
    url = stack.backend(QUEUE_NAME=queue).url
    body = {"model": queue, "prompt": " ".join(["word"] * 100), "max_tokens": 100, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=10) as r:
        received = 0
        for line in r.iter_lines():
            received += line.startswith("data: ")
            if received == 3:
                break  # leaving the block closes the connection
    assert_stops_generating(url, worker, queue)


def test_a_client_that_stops_waiting_cancels_its_job(stack: Stack, queue: str) -> None:
    worker = slow_worker(stack, queue)
    url = stack.backend(QUEUE_NAME=queue).url
    body = {"model": queue, "messages": [{"role": "user", "content": " ".join(["w"] * 100)}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/chat/completions", json=body, timeout=0.5)
    assert_stops_generating(url, worker, queue)


def test_metrics_cover_queue_wait_generation_tokens_and_the_fleet(stack: Stack, queue: str) -> None:
    stack.worker(queue, MODEL_NAME="echo-7b", ECHO_TOKEN_DELAY_MS=20)
    url = stack.backend(QUEUE_NAME=queue).url
    sdk = client(url)
    sdk.completions.create(model="echo-7b", prompt="one two three", max_tokens=10)
    for _ in sdk.completions.create(model="echo-7b", prompt="four five", stream=True):
        pass
    metrics = httpx.get(url + "/metrics").text
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    q = f'{{queue="{queue}"}}'
    assert lines[f"llm_wrap_job_queue_seconds_count{q}"] == 2
    assert lines[f"llm_wrap_job_run_seconds_count{q}"] == 2
    assert lines[f"llm_wrap_job_run_seconds_sum{q}"] >= 0.08  # 5 tokens at 20 ms
    assert lines[f"llm_wrap_time_to_first_token_seconds_count{q}"] == 1
    assert lines[f"llm_wrap_output_tokens_total{q}"] == 5
    assert lines[f"llm_wrap_prompt_tokens_total{q}"] == 5
    assert lines[f"llm_wrap_queue_consumers{q}"] == 1
    assert lines[f"llm_wrap_queue_depth{q}"] == 0
    assert lines[f"llm_wrap_dead_letters{q}"] == 0  # the worker declared <queue>.dead
    assert lines['llm_wrap_live_workers{model="echo-7b"}'] == 1


def test_priority_lets_a_later_job_overtake_queued_ones(stack: Stack, queue: str) -> None:
    slow_worker(stack, queue)
    url = stack.backend(QUEUE_NAME=queue).url

    def submit(prompt: str, priority: int) -> str:
        body = {"model": queue, "prompt": prompt, "priority": priority}
        r = httpx.post(url + "/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    busy = submit("a b c d e", 5)  # the worker takes it at once (one job at a time)
    wait_for_status(url, busy, {"in_progress"})
    low = [submit(f"low{i} x y", 0) for i in range(3)]
    high = submit("high x y", 10)
    finished = {
        job: wait_for_status(url, job, {"completed"})["finished_at"] for job in [*low, high]
    }
    assert finished[high] < min(finished[job] for job in low), finished
    bad = httpx.post(url + "/v1/jobs", json={"model": queue, "prompt": "x", "priority": -1})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "priority"


def test_every_answer_says_where_its_time_went(stack: Stack, queue: str) -> None:
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=50)
    url = stack.backend(QUEUE_NAME=queue).url
    chat = {"model": queue, "messages": [{"role": "user", "content": "a b c"}]}
    for path, body in (("/generate", {"content": "a b c"}), ("/v1/chat/completions", chat)):
        r = httpx.post(url + path, json=body, timeout=10)
        assert r.status_code == 200, r.text
        accepted, started, finished = (
            float(r.headers[f"x-job-{name}-at"]) for name in ("accepted", "started", "finished")
        )
        # Three tokens at 50 ms: the generation took about 150 ms of it.
        assert accepted <= started < finished and finished - started >= 0.14, r.headers
        assert len(r.headers["x-job-id"]) == 32
    chunks = list(client(url).chat.completions.create(**chat, stream=True))
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    times = (finishing.model_extra or {})["llm_wrap_timings"]
    assert times["accepted_at"] <= times["started_at"] < times["finished_at"]
