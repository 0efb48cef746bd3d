"""Smoke tests of the running CPU demo stack, through the docker SDK and the published port."""

from __future__ import annotations

import json
import os
import signal

import docker
import httpx
import pytest

from tests.smoke.conftest import NETWORK, PROJECT, LiveStack, wait_until

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker.from_env()


def _containers(client: docker.DockerClient) -> dict[str, docker.models.containers.Container]:
    found = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}
    )
    return {c.labels["com.docker.compose.service"]: c for c in found}


def _env(container: docker.models.containers.Container) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def test_every_service_runs_healthy_on_the_shared_network(
    cpu_stack: LiveStack, client: docker.DockerClient
) -> None:
    services = _containers(client)
    expected = {"backend", "rabbitmq", "redis"} | {
        f"worker-{m['name']}" for m in cpu_stack.spec["models"]
    }
    assert set(services) == expected
    for name, c in services.items():
        c.reload()
        assert c.status == "running", name
        assert c.attrs["State"]["Health"]["Status"] == "healthy", name
        assert list(c.attrs["NetworkSettings"]["Networks"]) == [NETWORK], name


def test_worker_env_matches_the_spec(cpu_stack: LiveStack, client: docker.DockerClient) -> None:
    services = _containers(client)
    for model in cpu_stack.spec["models"]:
        env = _env(services[f"worker-{model['name']}"])
        assert env["MODEL_NAME"] == model["name"]
        assert env["QUEUE_NAME"] == model.get("queue", model["name"])
        assert env["MODEL_BACKEND"] == model["backend"]
        assert env["RABBIT_MQ_HOST"] == "rabbitmq" and env["REDIS_HOST"] == "redis"
        assert env["RABBIT_MQ_PASSWORD"] and env["RABBIT_MQ_PASSWORD"] not in ("admin", "guest")
        for key, value in model.get("env", {}).items():
            assert env[key] == str(value)
        if model.get("max_model_len"):
            assert env["TOKENS_LEN"] == str(model["max_model_len"])


def test_broker_and_store_are_not_published(
    cpu_stack: LiveStack, client: docker.DockerClient
) -> None:
    services = _containers(client)
    for name in ("rabbitmq", "redis"):
        ports = services[name].attrs["NetworkSettings"]["Ports"] or {}
        assert not any(bindings for bindings in ports.values()), (name, ports)


def test_each_model_answers_generate_and_chat(cpu_stack: LiveStack) -> None:
    for model in cpu_stack.spec["models"]:
        meta = {"model": model["name"], "tokens_limit": 6, "temperature": 0}
        r = httpx.post(
            cpu_stack.url + "/generate", json={"content": "what is ai", "meta": meta}, timeout=60
        )
        assert r.status_code == 200, (model["name"], r.text)
        chat = {"messages": [{"role": "user", "content": "hello there"}], "meta": meta}
        r2 = httpx.post(cpu_stack.url + "/chat_completion", json=chat, timeout=60)
        assert r2.status_code == 200, (model["name"], r2.text)
        if model["backend"] == "echo":
            assert r.json() == {"content": "what is ai"}
            assert r2.json() == {"content": "hello there"}
    r = httpx.post(
        cpu_stack.url + "/generate", json={"content": "x", "meta": {"model": "nope"}}, timeout=10
    )
    assert r.status_code == 404


def test_each_model_streams_n_choices_with_logprobs_over_v1(cpu_stack: LiveStack) -> None:
    """OpenAI's API in the images: two choices, streamed with their tokens' logprobs."""
    for model in cpu_stack.spec["models"]:
        body = {
            "model": model["name"],
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 6,
            "n": 2,
            "logprobs": True,
            "stream": True,
        }
        tokens = {0: 0, 1: 0}
        with httpx.stream(
            "POST", cpu_stack.url + "/v1/chat/completions", json=body, timeout=60
        ) as r:
            assert r.status_code == 200, model["name"]
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]", (model["name"], events[-3:])
        for event in events[:-1]:
            for choice in json.loads(event)["choices"]:
                tokens[choice["index"]] += len((choice["logprobs"] or {}).get("content") or [])
        assert tokens[0] > 0 and tokens[1] > 0, (model["name"], tokens)


def test_each_worker_exports_metrics_where_prometheus_scrapes(
    cpu_stack: LiveStack, client: docker.DockerClient
) -> None:
    """The monitoring profile's Prometheus reads `worker-<name>:9400` on the fleet network:
    read it from there (the backend's container), as Prometheus would."""
    backend = _containers(client)["backend"]
    for model in cpu_stack.spec["models"]:
        url = f"http://worker-{model['name']}:9400/metrics"
        code = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
        done = backend.exec_run(["python", "-c", code])
        page = done.output.decode()
        assert done.exit_code == 0, page
        queue = model.get("queue", model["name"])
        assert f'llm_wrap_worker_capacity{{queue="{queue}"}}' in page, page[-2000:]
        assert f'backend="{model["backend"]}"' in page


def test_a_crashed_worker_restarts_and_serves_again(
    cpu_stack: LiveStack, client: docker.DockerClient
) -> None:
    worker = _containers(client)["worker-echo"]
    before = worker.attrs["RestartCount"]
    # `docker kill` counts as a manual stop (no restart); a crash is the main process dying.
    os.kill(worker.attrs["State"]["Pid"], signal.SIGKILL)

    def restarted_healthy() -> bool:
        worker.reload()
        state = worker.attrs["State"]
        return (
            worker.attrs["RestartCount"] > before
            and state["Running"]
            and state.get("Health", {}).get("Status") == "healthy"
        )

    assert wait_until(restarted_healthy, timeout=120), worker.attrs["State"]
    body = {"content": "back again", "meta": {"model": "echo"}}
    r = wait_until(
        lambda: (
            (x := httpx.post(cpu_stack.url + "/generate", json=body, timeout=30)).status_code == 200
            and x
        ),
        timeout=30,
    )
    assert r and r.json() == {"content": "back again"}


def test_logs_are_free_of_tracebacks(cpu_stack: LiveStack, client: docker.DockerClient) -> None:
    for name, c in _containers(client).items():
        logs = c.logs().decode(errors="replace")
        assert "Traceback" not in logs, f"{name}:\n{logs[-3000:]}"
