"""Real builds on the offline Debian base, and the images run as the stack uses them.

Needs Docker: skipped without it, failed without it when CI is set. The first run builds (about
3 minutes from nothing on 2 cores); later runs hit the layer cache and take seconds.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import aio_pika
import pytest
import redis

from tests.images.dockercli import ROOT, build_command, docker

pytestmark = pytest.mark.timeout(1800)
APP_USER = "10001"
# `ping` answers once the Erlang node is up, before the broker app and its listeners are: this
# check (as the compose files should use) waits for the AMQP port itself.
HEALTH_RABBIT = "rabbitmq-diagnostics -q check_port_connectivity"


def inspect(image: str) -> dict:  # type: ignore[type-arg]
    return json.loads(docker("image", "inspect", image).stdout)[0]["Config"]  # type: ignore[no-any-return]


def run(image: str, *cmd: str, env: dict[str, str] | None = None) -> str:
    env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    return docker("run", "--rm", *env_args, image, *cmd).stdout.strip()


def wait_healthy(name: str, timeout: float = 150) -> None:
    """Wait for the container's HEALTHCHECK (generous: the host may be busy building)."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        if status == "healthy":
            return
        time.sleep(1)
    logs = docker("logs", name, check=False)
    checks = docker("inspect", "-f", "{{json .State.Health.Log}}", name, check=False).stdout
    raise AssertionError(
        f"{name} is {status!r} after {timeout} s; last checks: {checks[-1500:]}\n"
        f"{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
    )


def main_process_user(name: str) -> str:
    """The user (name, as the container knows it) that the container's PID 1 runs as."""
    script = "id -nu $(awk '/^Uid:/ {print $2}' /proc/1/status)"
    return docker("exec", name, "sh", "-c", script).stdout.strip()


def published_port(name: str, port: int) -> int:
    return int(docker("port", name, f"{port}/tcp").stdout.splitlines()[0].rsplit(":", 1)[1])


@pytest.mark.parametrize("key", ["backend", "worker-cpu"])
def test_app_images_run_as_the_non_root_user(built_images: dict[str, str], key: str) -> None:
    image = built_images[key]
    assert inspect(image)["User"] == f"{APP_USER}:{APP_USER}"
    assert run(image, "id", "-u") == APP_USER
    assert (
        run(image, "python", "-c", "import importlib.metadata as m; print(m.version('llm-wrap'))")
        == "0.1.0"
    )


def test_backend_imports_its_app_and_dependencies(built_images: dict[str, str]) -> None:
    image = built_images["backend"]
    out = run(
        image,
        "python",
        "-c",
        "import services.backend.main, services.backend.healthcheck, fastapi, uvicorn, "
        "prometheus_client; print('ok')",
    )
    assert out == "ok"
    config = inspect(image)
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "services.backend.healthcheck"]
    assert "8000/tcp" in config["ExposedPorts"]


def test_worker_cpu_imports_its_models_with_cpu_torch(built_images: dict[str, str]) -> None:
    image = built_images["worker-cpu"]
    out = run(
        image,
        "python",
        "-c",
        "import services.worker, services.worker.healthcheck, services.worker.metrics, "
        "transformers, torch, httpx; print(torch.__version__, torch.version.cuda)",
    )
    assert out == "2.13.0+cpu None"
    config = inspect(image)
    assert "9400/tcp" in config["ExposedPorts"]
    assert "WORKER_METRICS_PORT=9400" in config["Env"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "services.worker.healthcheck"]
    assert config["Cmd"] == ["python", "-m", "services.worker"]


@pytest.fixture
def network(container_name: str) -> Iterator[str]:
    """A private Docker network; its containers (named after it) are removed afterwards."""
    docker("network", "create", container_name)
    yield container_name
    names = docker("ps", "-aq", "--filter", f"name={container_name}-").stdout.split()
    if names:
        docker("rm", "-f", "-v", *names, check=False)
    docker("network", "rm", container_name, check=False)


def test_images_serve_a_job_end_to_end(built_images: dict[str, str], network: str) -> None:
    """rabbitmq + redis + backend + echo worker, each image's own HEALTHCHECK turning healthy."""
    broker = {
        "RABBIT_MQ_HOST": "rabbitmq",
        "RABBIT_MQ_LOGIN": "llm",
        "RABBIT_MQ_PASSWORD": "pw",
        "REDIS_HOST": "redis",
        "QUEUE_NAME": "echo-model",
    }

    def start(role: str, image: str, *args: str, env: dict[str, str] | None = None) -> str:
        name = f"{network}-{role}"
        env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--network-alias",
            role,
            *env_args,
            *args,
            image,
        )
        return name

    rabbit = start(
        "rabbitmq",
        built_images["rabbitmq"],
        "--health-cmd",
        HEALTH_RABBIT,
        "--health-interval",
        "2s",
        env={"RABBITMQ_DEFAULT_USER": "llm", "RABBITMQ_DEFAULT_PASS": "pw"},
    )
    redis_name = start(
        "redis", built_images["redis"], "--health-cmd", "redis-cli ping", "--health-interval", "1s"
    )
    wait_healthy(redis_name)
    wait_healthy(rabbit)
    backend = start(
        "backend",
        built_images["backend"],
        "-p",
        "127.0.0.1::8123",
        env={**broker, "API_PORT": "8123"},
    )
    worker = start("worker", built_images["worker-cpu"], env={**broker, "MODEL_BACKEND": "echo"})
    wait_healthy(backend, timeout=180)
    wait_healthy(worker, timeout=180)

    url = f"http://127.0.0.1:{published_port(backend, 8123)}/generate"
    body = json.dumps(
        {
            "job_id": "images-e2e",
            "content": "hello from the images",
            "meta": {"model": "echo-model"},
        }
    ).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        assert r.status == 200
        assert json.loads(r.read()) == {"content": "hello from the images"}
    assert main_process_user(backend) == main_process_user(worker) == "llmwrap"

    # The operator commands run in the backend's container, with its settings and network.
    doctor = docker(
        "exec",
        backend,
        "python",
        "-m",
        "tools.ops.doctor",
        "--url",
        "http://127.0.0.1:8123",
        check=False,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "one token through the queue" in doctor.stdout, doctor.stdout
    status = docker("exec", backend, "python", "-m", "tools.ops.status").stdout
    assert any(
        line.split()[:4] == ["echo-model", "echo-model", "echo", "1"]
        for line in status.splitlines()
    ), status


async def test_rabbitmq_image_honours_default_user(
    built_images: dict[str, str], container_name: str
) -> None:
    docker(
        "run",
        "-d",
        "--name",
        container_name,
        "--hostname",
        "rabbit",
        "-e",
        "RABBITMQ_DEFAULT_USER=llm",
        "-e",
        "RABBITMQ_DEFAULT_PASS=p#ss word",
        "--health-cmd",
        HEALTH_RABBIT,
        "--health-interval",
        "2s",
        "-v",
        f"{container_name}-data:/var/lib/rabbitmq",
        "-p",
        "127.0.0.1::5672",
        built_images["rabbitmq"],
    )
    try:
        wait_healthy(container_name)
        users = docker("exec", container_name, "rabbitmqctl", "-q", "list_users").stdout
        assert "llm" in users and "guest" not in users
        port = published_port(container_name, 5672)
        conn = await aio_pika.connect(f"amqp://llm:p%23ss%20word@127.0.0.1:{port}/")
        async with conn:
            channel = await conn.channel()
            queue = await channel.declare_queue("", exclusive=True)
            await channel.default_exchange.publish(aio_pika.Message(b"hi"), queue.name)
            message = await queue.get(timeout=5)
            assert message is not None and message.body == b"hi"
            await message.ack()
        assert main_process_user(container_name) == "rabbitmq"
    finally:
        docker("rm", "-f", container_name, check=False)
        docker("volume", "rm", f"{container_name}-data", check=False)


def test_redis_image_runs_compose_command_args(
    built_images: dict[str, str], container_name: str
) -> None:
    docker(
        "run",
        "-d",
        "--name",
        container_name,
        "--health-cmd",
        "redis-cli ping",
        "--health-interval",
        "1s",
        "-p",
        "127.0.0.1::6379",
        built_images["redis"],
        "redis-server",
        "--appendonly",
        "yes",
        "--maxmemory",
        "64mb",
    )
    wait_healthy(container_name, timeout=30)
    config = docker("exec", container_name, "redis-cli", "config", "get", "appendonly").stdout
    assert config.split() == ["appendonly", "yes"]
    client = redis.Redis(host="127.0.0.1", port=published_port(container_name, 6379))
    try:
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()
    assert docker("exec", container_name, "ls", "/data").stdout.split() == ["appendonlydir"]
    assert main_process_user(container_name) == "redis"


def _layers(image: str) -> list[str]:
    return json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout)  # type: ignore[no-any-return]


def test_rebuild_is_cached(built_images: dict[str, str]) -> None:
    """A second build.sh reuses every layer, the dependency layers even if the code changed since.

    (The last two layers of an app image hold the project's wheel: a code edit made while the
    tests run rebuilds those alone.)
    """
    before = {k: _layers(v) for k, v in built_images.items()}
    start = time.monotonic()
    proc = subprocess.run(
        build_command("backend,worker-cpu,rabbitmq,redis"),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    for key, image in built_images.items():
        after = _layers(image)
        keep = -2 if key in {"backend", "worker-cpu"} else len(after)
        assert after[:keep] == before[key][:keep], key
    assert elapsed < 60, f"a cached rebuild took {elapsed:.0f} s"
