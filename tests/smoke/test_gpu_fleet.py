"""A GPU fleet on a host without GPUs: create (not start) its containers and check that each
worker reserves exactly the spec's devices."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest
import yaml

from tools.fleet import render

pytestmark = pytest.mark.smoke

FLEET = """
name: llmwrap-gpu-smoke
network: llm_wrap_gpu_smoke
models:
  - name: big
    path: {root}/big
    gpus: [0, 1, 2, 3]
  - name: small
    path: {root}/small
    gpus: [5]
  - name: on-gpu-7
    path: {root}/small
    gpus: [7]
    backend: transformers
"""


def test_created_workers_reserve_exactly_their_gpus(images: dict[str, str], tmp_path: Path) -> None:
    for d in ("big", "small"):
        (tmp_path / d).mkdir()
    spec = yaml.safe_load(FLEET.format(root=tmp_path))
    # No GPU image can be pulled or built here: the CPU worker image stands in (nothing starts).
    spec["images"] = {**images, "worker_gpu": "llmwrap/worker-cpu:0.1.0"}
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "deploy"
    render(tmp_path / "fleet.yaml", out)
    compose = ["docker", "compose", "-f", str(out / "docker-compose.yml")]
    try:
        subprocess.run([*compose, "create"], check=True, capture_output=True)
        client = docker.from_env()
        found = client.containers.list(
            all=True, filters={"label": "com.docker.compose.project=llmwrap-gpu-smoke"}
        )
        workers = {
            c.labels["com.docker.compose.service"]: c
            for c in found
            if c.labels["com.docker.compose.service"].startswith("worker-")
        }
        expected = {
            "worker-big": ["0", "1", "2", "3"],
            "worker-small": ["5"],
            "worker-on-gpu-7": ["7"],
        }
        assert set(workers) == set(expected)
        for name, c in workers.items():
            (req,) = c.attrs["HostConfig"]["DeviceRequests"]
            assert req["Driver"] == "nvidia"
            assert req["DeviceIDs"] == expected[name]
            assert req["Capabilities"] == [["gpu"]]
            env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
            assert env["NVIDIA_VISIBLE_DEVICES"] == ",".join(expected[name])
            assert env["TENSOR_PARALLEL_SIZE"] == str(len(expected[name]))
            assert c.status == "created"
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], capture_output=True)
