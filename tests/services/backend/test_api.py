"""The HTTP API end to end: real uvicorn backend, real worker processes, real Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis as redis_sync

from tests.utils.wait import wait_until
from tools.local.servers import RedisServer
from tools.local.stack import Stack

ORIGINAL_GENERATE = {
    "job_id": "12345",
    "meta": {
        "temperature": 0.5,
        "tokens_limit": 1000,
        "stop_words": ["stop"],
        "model": "gpt-model",
    },
    "content": "What is AI?",
}
ORIGINAL_CHAT = {
    "job_id": "12345",
    "meta": {
        "temperature": 0.5,
        "tokens_limit": 1000,
        "stop_words": ["stop"],
        "model": "gpt-model",
    },
    "messages": [
        {"role": "user", "content": "What is AI?"},
        {"role": "assistant", "content": "Artificial Intelligence is..."},
    ],
}


@pytest.fixture
def echo(stack: Stack, queue: str) -> str:
    """A backend whose default model is an echo worker, also known as the original's gpt-model."""
    stack.worker(queue, MODEL_ALIASES="gpt-model")
    return stack.backend(QUEUE_NAME=queue).url


def test_original_readme_examples_verbatim(echo: str) -> None:
    r = httpx.post(echo + "/generate", json=ORIGINAL_GENERATE, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"content": "What is AI?"}
    r = httpx.post(echo + "/chat_completion", json=ORIGINAL_CHAT, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"content": "Artificial Intelligence is..."}


def test_optional_fields_and_nulls_take_defaults(echo: str) -> None:
    bodies = [
        {"content": "just content"},
        {"content": "just content", "meta": None, "job_id": None, "priority": None},
        {
            "content": "just content",
            "meta": {"model": None, "stop_words": None, "temperature": None, "tokens_limit": None},
        },
        {"content": "just content", "priority": 9, "unknown_field": "ignored"},
    ]
    for body in bodies:
        r = httpx.post(echo + "/generate", json=body, timeout=10)
        assert r.status_code == 200, (body, r.text)
        assert r.json() == {"content": "just content"}
    chat = {
        "messages": [{"role": "user", "content": "hi there"}],
        "source": "local",
        "priority": None,
        "meta": {"model": None, "stop_words": None},
    }
    r = httpx.post(echo + "/chat_completion", json=chat, timeout=10)
    assert r.json() == {"content": "hi there"}


def test_tokens_limit_and_stop_words_are_honoured(echo: str) -> None:
    body = {"content": "one two three four five", "meta": {"tokens_limit": 3}}
    assert httpx.post(echo + "/generate", json=body, timeout=10).json() == {
        "content": "one two three"
    }
    body = {"content": "one two STOP three", "meta": {"stop_words": ["STOP"]}}
    assert httpx.post(echo + "/generate", json=body, timeout=10).json() == {"content": "one two "}


def test_queue_name_query_parameter_routes_like_the_original_sdk(stack: Stack, queue: str) -> None:
    other = queue + "-other"
    stack.worker(other, MODEL_NAME="other")
    url = stack.backend(QUEUE_NAME=queue).url
    r = httpx.post(
        url + "/generate", params={"queue_name": other}, json={"content": "x"}, timeout=10
    )
    assert r.status_code == 200, r.text


def test_openapi_documents_the_bodies_and_the_queue_name_parameter(
    stack: Stack, queue: str
) -> None:
    stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue).url
    spec = httpx.get(url + "/openapi.json", timeout=10).json()
    for path in ("/generate", "/chat_completion"):
        op = spec["paths"][path]["post"]
        assert [p["name"] for p in op["parameters"]] == ["queue_name"]
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ResponseModel"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/generate", {}, "content"),
        ("/generate", {"content": "x", "meta": {"tokens_limit": 0}}, "tokens_limit"),
        ("/generate", {"content": "x", "meta": {"temperature": -1}}, "temperature"),
        ("/generate", {"content": "x", "meta": {"stop_words": "stop"}}, "stop_words"),
        ("/chat_completion", {"messages": []}, "messages"),
        ("/chat_completion", {"messages": [{"role": "user"}]}, "content"),
    ],
)
def test_bad_input_is_422_naming_the_field(echo: str, path: str, body: dict, field: str) -> None:
    r = httpx.post(echo + path, json=body, timeout=10)
    assert r.status_code == 422
    assert any(field in map(str, err["loc"]) for err in r.json()["detail"]), r.text


def test_unknown_model_is_404_listing_known_models(echo: str) -> None:
    body = {"content": "x", "meta": {"model": "no-such-model"}}
    started = time.monotonic()
    r = httpx.post(echo + "/generate", json=body, timeout=10)
    assert time.monotonic() - started < 2
    assert r.status_code == 404
    detail = r.json()["detail"]
    assert "no-such-model" in detail["message"]
    assert "gpt-model" in detail["known_models"]


def test_two_models_are_routed_to_their_own_workers(stack: Stack, queue: str) -> None:
    # Echo answers do not say who served them: the workers' logs do.
    stack.worker(queue + "-a", MODEL_NAME="model-a", MODEL_BACKEND="echo")
    stack.worker(queue + "-b", MODEL_NAME="model-b", MODEL_BACKEND="echo")
    url = stack.backend(QUEUE_NAME=queue + "-a").url
    for model in ["model-a", "model-b", "model-a"]:
        body = {"content": f"hello {model}", "meta": {"model": model}}
        assert httpx.post(url + "/generate", json=body, timeout=10).json() == {
            "content": f"hello {model}"
        }

    def logs() -> dict[str, str]:
        return {p.log.name: p.output() for p in stack.procs if "worker" in p.log.name}

    def served() -> dict[str, int]:
        return {name: text.count(" completed") for name, text in logs().items()}

    # A worker logs "completed" after its ack, which can follow the HTTP answer: wait for the lines.
    wait_until(lambda: sum(served().values()) >= 3, 5, lambda: f"3 jobs logged: {served()}")
    assert sorted(served().values()) == [1, 2], served()
    assert "model model-b" in "".join(t for t in logs().values() if t.count(" completed") == 1)


def test_200_concurrent_requests_each_get_their_own_answer(stack: Stack, queue: str) -> None:
    # A plain test: starting the processes blocks, so only the requests run in an event loop.
    stack.worker(queue, WORKER_CONCURRENCY=64)
    url = stack.backend(QUEUE_NAME=queue).url
    limits = httpx.Limits(max_connections=200)

    async def all_at_once() -> list[tuple[int, httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

            async def one(i: int) -> tuple[int, httpx.Response]:
                body = {"job_id": f"job-{i}", "content": f"request number {i} says {i * 7919}"}
                return i, await client.post("/generate", json=body)

            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(all_at_once())
    for i, r in results:
        assert r.status_code == 200, r.text
        assert r.json() == {"content": f"request number {i} says {i * 7919}"}


def test_reused_job_id_never_returns_another_clients_answer(echo: str) -> None:
    a = httpx.post(echo + "/generate", json={"job_id": "same", "content": "first"}, timeout=10)
    b = httpx.post(echo + "/generate", json={"job_id": "same", "content": "second"}, timeout=10)
    assert (a.json(), b.json()) == ({"content": "first"}, {"content": "second"})


def test_no_live_worker_is_503_at_once(stack: Stack, queue: str) -> None:
    worker = stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue).url
    assert httpx.post(url + "/generate", json={"content": "x"}, timeout=10).status_code == 200
    worker.kill()  # no clean withdrawal: the heartbeat must simply expire (TTL 2 s)
    # /v1/models lists the models this backend sees a live worker for.
    wait_until(
        lambda: httpx.get(url + "/v1/models", timeout=5).json()["data"] == [],
        10,
        "the backend to see the worker's heartbeat expire",
    )
    started = time.monotonic()
    r = httpx.post(url + "/generate", json={"content": "x"}, timeout=10)
    assert time.monotonic() - started < 2
    assert r.status_code == 503
    assert "no live worker" in r.json()["detail"]


def test_job_deadline_is_504_and_job_recorded_failed(
    stack: Stack, queue: str, redis_server: RedisServer, prefix: str
) -> None:
    worker = stack.worker(queue, ECHO_TOKEN_DELAY_MS=1000)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=1).url
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        answer = pool.submit(
            httpx.post, url + "/generate", json={"content": "a b c d e f"}, timeout=10
        )
        wait_until(lambda: "started" in worker.output(), 5, "the worker to start the job")
        # The worker watches the deadline too: frozen mid-job, it cannot record it, so the
        # record read below is the backend's own (a hung worker writes nothing either).
        worker.signal(signal.SIGSTOP)
        try:
            r = answer.result()
            waited = time.monotonic() - started
            # Error answers carry no X-Job-Id: the test's prefix holds this one job.
            store = redis_sync.Redis(port=redis_server.port, decode_responses=True)
            (key,) = store.keys(f"{prefix}:job:*")
            record = store.hgetall(key)
        finally:
            worker.signal(signal.SIGCONT)
    assert r.status_code == 504
    assert 1 <= waited < 3
    assert "did not finish" in r.json()["detail"]
    assert record["status"] == "error" and record["error_code"] == "deadline", record
    assert "timed out" in record["error"], record


def test_model_error_is_502_with_its_message(stack: Stack, queue: str) -> None:
    # An OpenAI-compatible upstream that is not there: the model backend fails, the job reports it.
    stack.worker(queue, MODEL_BACKEND="openai", INNER_LLM_URL="http://127.0.0.1:9")
    url = stack.backend(QUEUE_NAME=queue).url
    r = httpx.post(url + "/generate", json={"content": "x"}, timeout=20)
    assert r.status_code == 502
    assert "unreachable" in r.json()["detail"]
    assert "127.0.0.1:9" not in r.json()["detail"]  # nothing internal reaches the client


def test_full_queue_is_429(stack: Stack, queue: str) -> None:
    stack.worker(queue, QUEUE_MAX_LENGTH=2, WORKER_CONCURRENCY=1, ECHO_TOKEN_DELAY_MS=300)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            rs = await asyncio.gather(
                *(client.post("/generate", json={"content": f"w{i} x y"}) for i in range(8))
            )
        return [r.status_code for r in rs]

    codes = asyncio.run(flood())
    assert codes.count(429) >= 1, codes
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= 3, codes


def test_api_keys_are_required_when_configured(stack: Stack, queue: str) -> None:
    stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue, API_KEYS="k1,k2").url
    body = {"content": "secret"}
    assert httpx.post(url + "/generate", json=body, timeout=10).status_code == 401
    bad = httpx.post(url + "/generate", json=body, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json() == {"detail": "missing or invalid API key"}
    ok = httpx.post(
        url + "/generate", json=body, headers={"Authorization": "Bearer k2"}, timeout=10
    )
    assert ok.json() == {"content": "secret"}
    assert (
        httpx.post(
            url + "/generate", json=body, headers={"X-API-Key": "k1"}, timeout=10
        ).status_code
        == 200
    )
    assert httpx.get(url + "/health").status_code == 200


def test_health_ready_and_metrics(echo: str) -> None:
    assert httpx.get(echo + "/health").json() == {"status": "ok"}
    assert httpx.get(echo + "/ready").json() == {"status": "ready"}
    httpx.post(echo + "/generate", json={"content": "count me"}, timeout=10)
    httpx.post(echo + "/generate", json={"content": "x", "meta": {"model": "nope"}}, timeout=10)
    metrics = httpx.get(echo + "/metrics").text
    assert "llm_wrap_jobs_total" in metrics
    assert 'status="completed"' in metrics
    assert 'llm_wrap_requests_rejected_total{status="404"} 1.0' in metrics


def test_operator_pages_follow_public_endpoints_when_keys_are_required(
    stack: Stack, queue: str
) -> None:
    stack.worker(queue)
    keyed = stack.backend(QUEUE_NAME=queue, API_KEYS="k1", PUBLIC_ENDPOINTS="").url
    for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
        assert httpx.get(keyed + path).status_code == 401, path
        assert httpx.get(keyed + path, headers={"X-API-Key": "k1"}).status_code == 200, path
    assert httpx.get(keyed + "/health").status_code == 200  # probes need no key
    docs_only = stack.backend(QUEUE_NAME=queue, API_KEYS="k1", PUBLIC_ENDPOINTS="docs").url
    assert httpx.get(docs_only + "/openapi.json").status_code == 200
    assert httpx.get(docs_only + "/metrics").status_code == 401
    # Without keys configured everything stays open, as before.
    open_ = stack.backend(QUEUE_NAME=queue, PUBLIC_ENDPOINTS="").url
    assert httpx.get(open_ + "/metrics").status_code == 200
