"""The CPU demo fleet in Docker: build images, render the fleet, `docker compose up --wait`.

Images are built here by `tools/images/build.sh`, which uses the official base images when a
registry answers and falls back to local Debian bases (and says so) when none does; RabbitMQ and
Redis likewise come from the official images when present or pullable, else from local builds.
The tiny transformers model is made by the worker image itself. Everything lives under `.run/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tools.demo.example import EXAMPLE, ask
from tools.fleet import render

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".run"
DEPLOY = RUN / "cpu-demo"
WORKER_CPU = "llmwrap/worker-cpu:0.1.0"
INFRA = {  # fleet key: (official image, local fallback, build.sh name)
    "rabbitmq": ("rabbitmq:3.13-alpine", "llmwrap/rabbitmq:3.10-debian", "rabbitmq"),
    "redis": ("redis:7.2-alpine", "llmwrap/redis:7.0-debian", "redis"),
}


def _say(msg: str) -> None:
    sys.stderr.write(f"[demo] {msg}\n")


def _docker(*args: str) -> bool:
    return subprocess.run(["docker", *args], capture_output=True).returncode == 0


def _build(names: str) -> None:
    subprocess.run(["bash", str(ROOT / "tools/images/build.sh"), "--only", names], check=True)


def _infra_images() -> dict[str, str]:
    chosen = {}
    for key, (official, local, name) in INFRA.items():
        if _docker("image", "inspect", official) or _docker("pull", "-q", official):
            chosen[key] = official
        else:
            if not _docker("image", "inspect", local):
                _build(name)
            _say(f"no registry for {official}: using the local build {local}")
            chosen[key] = local
    return chosen


def _tiny_model() -> Path:
    model = RUN / "models" / "tiny-llama"
    if not (model / "config.json").exists():
        model.mkdir(parents=True, exist_ok=True)
        _say(f"building the tiny demo model in {model}")
        subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--user",
                f"{os.getuid()}:{os.getgid()}",
                "-e",
                "HOME=/tmp",
                "-v",
                f"{model}:/out",
                WORKER_CPU,
                "python",
                "-m",
                "services.worker.tiny_model",
                "/out",
            ],
            check=True,
        )
    return model


def _compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yml"), *args], check=check
    )


def up(port: int) -> int:
    RUN.mkdir(exist_ok=True)
    _build("backend,worker-cpu")
    spec = yaml.safe_load((ROOT / "compose/fleet.cpu-demo.yaml").read_text())
    spec.setdefault("images", {}).update(_infra_images())
    spec["backend"] = {**spec.get("backend", {}), "port": port}
    for model in spec["models"]:
        if model.get("backend") == "transformers":
            model["path"] = str(_tiny_model())
    (RUN / "fleet.cpu-demo.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    render(RUN / "fleet.cpu-demo.yaml", DEPLOY)
    # The demo's data is disposable: start from fresh volumes, since a RabbitMQ volume left by an
    # earlier demo (another checkout, other generated credentials) would refuse the new ones.
    _compose("down", "-v", "--remove-orphans", check=False)
    if _compose("up", "-d", "--wait", "--wait-timeout", "300", check=False).returncode != 0:
        _compose("ps", check=False)
        _say(
            "the stack did not become healthy; see: "
            f"docker compose -f {DEPLOY}/docker-compose.yml logs"
        )
        return 1
    url = f"http://127.0.0.1:{port}"
    r = ask(url, timeout=60)
    if r is None:
        _say("the stack is up but did not answer /generate")
        return 1
    _say(f"stack up: {url} (services: docker compose -f {DEPLOY}/docker-compose.yml ps)")
    _say(f"POST /generate {EXAMPLE}")
    print(r.text)
    _say("stop it with: bash tools/demo.sh down")
    return 0


def down() -> int:
    if (DEPLOY / "docker-compose.yml").exists():
        _compose("down", "-v", check=False)
    return 0
