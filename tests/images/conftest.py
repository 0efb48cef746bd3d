"""Image-test fixtures: skip without Docker, unless CI is set (then fail)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.images.dockercli import ROOT, build_command, docker, docker_answers


@pytest.fixture(scope="session")
def require_docker() -> None:
    if not docker_answers():
        if os.environ.get("CI"):
            pytest.fail("Docker is required for the image tests when CI is set")
        pytest.skip("no Docker engine answers (bash tools/setup/docker.sh starts one)")


@pytest.fixture(scope="session")
def built_images(require_docker: None) -> dict[str, str]:
    """Build backend, worker-cpu, rabbitmq and redis on the offline base (cached once built)."""
    proc = subprocess.run(
        build_command("backend,worker-cpu,rabbitmq,redis"),
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return {
        "backend": "llmwrap/backend:0.1.0",
        "worker-cpu": "llmwrap/worker-cpu:0.1.0",
        "rabbitmq": "llmwrap/rabbitmq:3.10-debian",
        "redis": "llmwrap/redis:7.0-debian",
    }


@pytest.fixture
def container_name() -> Iterator[str]:
    """A unique container name; the container is removed afterwards."""
    name = f"llmwrap-test-{uuid.uuid4().hex[:10]}"
    yield name
    docker("rm", "-f", "-v", name, check=False)
