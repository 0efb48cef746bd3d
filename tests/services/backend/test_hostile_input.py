"""Hostile and odd input on the real stack: a clear 4xx, and nothing left behind (no waiter entry,
no open job record, no gauge drift). Also the request limits and idempotency keys."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis import Redis

from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import Stack

SURROGATE = "\\ud800"  # as it appears in the JSON text: an escape no UTF-8 can carry


@pytest.fixture
def echo(stack: Stack, queue: str) -> str:
    stack.worker(queue)
    return stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=2).url


def _raw(url: str, path: str, body: str) -> httpx.Response:
    return httpx.post(
        url + path, content=body.encode(), headers={"Content-Type": "application/json"}, timeout=10
    )


def _leftovers(url: str, redis: Redis, prefix: str) -> tuple[float, list[bytes]]:
    """The waiting-requests gauge, and job records still pending or running."""
    metrics = httpx.get(url + "/metrics").text
    waiting = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("llm_wrap_jobs_waiting ")
    )
    open_jobs = [
        key
        for key in redis.scan_iter(f"{prefix}:job:*")
        if redis.hget(key, "status") in (b"pending", b"in_progress")
    ]
    return waiting, open_jobs


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", '{"content": "a SURROGATE b"}'),
        ("/generate", '{"content": "x", "job_id": "SURROGATE"}'),
        ("/generate", '{"content": "x", "meta": {"stop_words": ["SURROGATE"]}}'),
        ("/chat_completion", '{"messages": [{"role": "user", "content": "SURROGATE"}]}'),
        ("/v1/completions", '{"model": "MODEL", "prompt": "SURROGATE"}'),
        (
            "/v1/chat/completions",
            '{"model": "MODEL", "messages": [{"role": "user", "content": "SURROGATE"}]}',
        ),
        ("/generate", '{"content": "x", "meta": {"temperature": NaN}}'),
        ("/generate", '{"content": "x", "meta": {"temperature": Infinity}}'),
        ("/generate", '{"content": "x", "meta": {"tokens_limit": 1e400}}'),
        ("/generate", '{"content": "x", "meta": {"tokens_limit": 1000000000}}'),
        ("/generate", '{"content": "x", "meta": {"model": "SURROGATE"}}'),
        (
            "/v1/chat/completions",
            '{"model": "MODEL", "messages": [{"role": "user", "content": "x"}],'
            ' "temperature": NaN}',
        ),
    ],
)
def test_hostile_values_are_4xx_and_leave_nothing_behind(
    echo: str, queue: str, redis_server: RedisServer, prefix: str, path: str, body: str
) -> None:
    body = body.replace("SURROGATE", SURROGATE).replace("MODEL", queue)
    for _ in range(20):
        r = _raw(echo, path, body)
        assert r.status_code in (400, 404, 422), (r.status_code, r.text)
        r.json()  # a valid JSON error body
    time.sleep(2.5)  # past JOB_TIMEOUT: anything registered would still be there
    waiting, open_jobs = _leftovers(echo, Redis(port=redis_server.port), prefix)
    assert waiting == 0 and open_jobs == []
    assert _raw(echo, "/generate", '{"content": "still fine"}').json() == {"content": "still fine"}


def test_limits_on_stop_words_messages_and_queue_names(echo: str) -> None:
    too_many = {"content": "x", "meta": {"stop_words": [f"s{i}" for i in range(17)]}}
    too_long = {"content": "x", "meta": {"stop_words": ["s" * 257]}}
    messages = {"messages": [{"role": "user", "content": "m"}] * 1001}
    for path, body in (
        ("/generate", too_many),
        ("/generate", too_long),
        ("/chat_completion", messages),
    ):
        r = httpx.post(echo + path, json=body, timeout=10)
        assert r.status_code == 422, r.text
    # The original SDK's ?queue_name=: empty is bad input, unknown is 404 (neither an outage).
    empty = httpx.post(echo + "/generate?queue_name=", json={"content": "x"})
    assert empty.status_code == 422
    unknown = httpx.post(echo + "/generate?queue_name=nope", json={"content": "x"})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]["message"]


def test_a_body_over_the_limit_is_413_before_it_is_read(stack: Stack, queue: str) -> None:
    stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue, MAX_BODY_BYTES=1024 * 1024).url
    big = {"content": "x" * (2 * 1024 * 1024)}
    r = httpx.post(url + "/generate", json=big, timeout=10)
    assert r.status_code == 413 and "MAX_BODY_BYTES" in r.json()["detail"]
    r = httpx.post(url + "/v1/completions", json={"model": queue, "prompt": big["content"]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    # Chunked, without a Content-Length: counted as it comes.
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"content": "'
        for _ in range(40):
            yield b"y" * 64 * 1024
        yield b'"}'

    r = httpx.post(
        url + "/generate", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    small = httpx.post(
        url + "/generate",
        content=iter([b'{"content": "ok"}']),
        headers={"Content-Type": "application/json"},
    )
    assert small.json() == {"content": "ok"}


def test_a_large_answer_never_disturbs_other_requests(
    own_stack: Stack, own_servers: tuple[RedisServer, RabbitServer], queue: str
) -> None:
    redis, _ = own_servers
    # A small pub/sub output buffer: an answer pushed whole would get the backend's
    # subscription dropped, and every request waiting on it with it.
    Redis(port=redis.port).config_set("client-output-buffer-limit", "pubsub 256kb 128kb 60")
    own_stack.worker(queue)
    url = own_stack.backend(QUEUE_NAME=queue).url
    large = " ".join(f"w{i}" for i in range(300_000))  # about 2 MB

    async def run() -> tuple[httpx.Response, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = {"content": large, "meta": {"tokens_limit": 1_000_000}}
            big = asyncio.create_task(client.post("/generate", json=body))
            small = [
                await client.post("/generate", json={"content": f"small {i}"}) for i in range(50)
            ]
            return await big, small

    big, small = asyncio.run(run())
    assert big.status_code == 200 and big.json()["content"] == large
    assert [r.json()["content"] for r in small] == [f"small {i}" for i in range(50)]


def test_an_idempotency_key_runs_the_model_once(stack: Stack, queue: str) -> None:
    worker = stack.worker(queue, ECHO_TOKEN_DELAY_MS=100)
    url = stack.backend(QUEUE_NAME=queue).url
    headers = {"Idempotency-Key": "order-42"}
    body = {"content": "a b c"}

    async def twice() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = asyncio.create_task(client.post("/generate", json=body, headers=headers))
            await asyncio.sleep(0.1)  # the repeat comes while the first is still running
            return [await client.post("/generate", json=body, headers=headers), await first]

    repeat, first = asyncio.run(twice())
    assert first.json() == repeat.json() == {"content": "a b c"}
    assert first.headers["x-job-id"] == repeat.headers["x-job-id"]
    after = httpx.post(url + "/generate", json=body, headers=headers, timeout=10)
    assert after.json() == {"content": "a b c"}
    assert worker.output().count(" started (model") == 1
    other = httpx.post(url + "/generate", json={"content": "else"}, headers=headers, timeout=10)
    assert other.status_code == 422 and "another request body" in other.json()["detail"]
    # The route is part of the request: the same key on another route is another body.
    chat = {"model": queue, "messages": [{"role": "user", "content": "hi"}]}
    r0 = httpx.post(url + "/v1/chat/completions", json=chat, headers=headers, timeout=10)
    assert r0.status_code == 400 and r0.json()["error"]["code"] == "invalid_value"
    # Keys are per client: another API key's "order-42" is its own.
    mine = {"Idempotency-Key": "order-42", "X-API-Key": "someone-else"}
    r1 = httpx.post(url + "/v1/chat/completions", json=chat, headers=mine, timeout=10)
    r2 = httpx.post(url + "/v1/chat/completions", json={**chat, "stream": True}, headers=mine)
    assert r1.status_code == 200 and r2.status_code == 400
    job1 = httpx.post(
        url + "/v1/jobs", json={"model": queue, "prompt": "p"}, headers={"Idempotency-Key": "j"}
    )
    job2 = httpx.post(
        url + "/v1/jobs", json={"model": queue, "prompt": "p"}, headers={"Idempotency-Key": "j"}
    )
    assert job1.status_code == job2.status_code == 202 and job1.json()["id"] == job2.json()["id"]
    assert worker.output().count(" started (model") == 3


def test_a_refused_job_frees_its_idempotency_key(stack: Stack, queue: str) -> None:
    worker = stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue).url
    headers = {"Idempotency-Key": "retry-me"}
    worker.stop()
    time.sleep(0.5)
    assert httpx.post(url + "/generate", json={"content": "x"}, headers=headers).status_code == 503
    stack.worker(queue)
    r = httpx.post(url + "/generate", json={"content": "x"}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
