"""The live stack for smoke tests: images built from this tree (offline when no registry), the
CPU demo fleet rendered by the real generator, `docker compose up -d --wait`, torn down at the end.

Skipped where Docker is not available, except in CI (env CI set), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.images.dockercli import build_command
from tools.fleet import render

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "llmwrap-smoke"
NETWORK = "llm_wrap_network"
# The Python bases build.sh builds the app images on: official, or made here (base.sh).
OFFICIAL_PYTHON = "python:3.11-slim-bookworm"
LOCAL_PYTHON = "llmwrap/python:3.11-bookworm"
# Official images where this host has them (a registry was reachable), else the offline builds.
INFRA = {
    "rabbitmq": ("rabbitmq:3.13-alpine", "llmwrap/rabbitmq:3.10-debian"),
    "redis": ("redis:7.2-alpine", "llmwrap/redis:7.0-debian"),
}


def _docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    ok = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    return (
        ok and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    )


def _require_docker() -> None:
    if not _docker_ok():
        if os.environ.get("CI"):
            pytest.fail(
                "Docker engine and Compose v2 are required in CI (bash tools/setup/docker.sh)"
            )
        pytest.skip("no Docker engine / Compose v2 here (bash tools/setup/docker.sh)")


def _have(image: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """The images the smoke fleet runs. The app images are built from this tree every session
    (Docker's layer cache makes that seconds when nothing changed): images an older tree left
    would run that tree's code and pass or fail for it. Infra images are built when missing."""
    _require_docker()
    chosen = {
        name: (official if _have(official) else local) for name, (official, local) in INFRA.items()
    }
    names = ["backend", "worker-cpu", *(n for n, image in chosen.items() if not _have(image))]
    # The base build.sh would pick, without its registry probe where the offline one is here.
    offline = not _have(OFFICIAL_PYTHON) and _have(LOCAL_PYTHON)
    proc = subprocess.run(
        build_command(",".join(names), offline=offline),
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return {n: (o if _have(o) else loc) for n, (o, loc) in INFRA.items()}


@dataclass
class LiveStack:
    dir: Path
    spec: dict
    url: str

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", "-f", str(self.dir / "docker-compose.yml"), *args],
            capture_output=True,
            text=True,
            check=check,
        )


def _containers_on_network(network: str) -> list[str]:
    proc = subprocess.run(
        [
            "docker",
            "network",
            "inspect",
            network,
            "--format",
            "{{range .Containers}}{{.Name}} {{end}}",
        ],
        capture_output=True,
        text=True,
    )
    return proc.stdout.split() if proc.returncode == 0 else []


def _free_port() -> int:
    from tools.local.servers import free_port

    return free_port()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.worker.tiny_model import build

    return build(tmp_path_factory.mktemp("smoke-model") / "tiny-llama")


@pytest.fixture(scope="session")
def cpu_stack(
    images: dict[str, str], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """The checked-in CPU demo fleet, with this host's images, model path and a free port."""
    spec = yaml.safe_load((ROOT / "compose/fleet.cpu-demo.yaml").read_text())
    spec["name"] = PROJECT
    spec.setdefault("images", {}).update(images)
    spec["backend"] = {**spec.get("backend", {}), "host": "127.0.0.1", "port": _free_port()}
    for model in spec["models"]:
        if model.get("backend") == "transformers":
            model["path"] = str(tiny_model_dir)
    work = tmp_path_factory.mktemp("smoke-fleet")
    (work / "fleet.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = work / "deploy"
    render(work / "fleet.yaml", out)
    stack = LiveStack(out, spec, f"http://127.0.0.1:{spec['backend']['port']}")
    stack.compose("down", "-v", "--remove-orphans", check=False)
    others = _containers_on_network(NETWORK)
    if others:
        # Services of two stacks on one network answer to the same names (redis, rabbitmq...).
        pytest.fail(
            f"{NETWORK} is in use by {', '.join(others)}: stop that stack first "
            "(e.g. bash tools/demo.sh down)"
        )
    up = stack.compose("up", "-d", "--wait", "--wait-timeout", "300", check=False)
    if up.returncode != 0:
        logs = stack.compose("logs", "--no-color", "--tail", "60", check=False).stdout
        stack.compose("down", "-v", check=False)
        pytest.fail(f"docker compose up failed:\n{up.stderr}\n{logs}")
    try:
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)


def wait_until(predicate, timeout: float, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
