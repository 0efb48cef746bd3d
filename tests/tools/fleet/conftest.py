"""Fixtures for the fleet generator: spec files, the CLI in-process, and output validators."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from tools.fleet.cli import main

REPO = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"
SCHEMA = REPO / "tools" / "fleet" / "data" / "compose-spec.json"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run `python -m tools.fleet ARGS` in-process; returns exit code, stdout, stderr."""

    def run(*args: str | Path) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def write_fleet(tmp_path: Path) -> Callable[[str], Path]:
    """Write a fleet spec (dedented YAML) to a temp file and return its path."""

    def write(text: str, name: str = "fleet.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def compose_schema() -> jsonschema.protocols.Validator:
    """The compose-spec JSON schema shipped in tools/fleet/data (draft-07, as its $schema says).

    Its `$schema` URL lacks the trailing '#' that jsonschema keys drafts by, so name the draft.
    """
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _load_compose(out_dir: Path) -> dict:
    return yaml.safe_load((out_dir / "docker-compose.yml").read_text(encoding="utf-8"))


def _read_env(path: Path) -> dict[str, str]:
    """Env-file keys and raw values (as written; quoting is checked through docker compose)."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


@pytest.fixture
def load_compose() -> Callable[[Path], dict]:
    """Parse DIR/docker-compose.yml."""
    return _load_compose


@pytest.fixture
def read_env() -> Callable[[Path], dict[str, str]]:
    """Parse an env file this tool wrote into {KEY: raw value}."""
    return _read_env


def _docker_compose() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if done.returncode == 0 else None


@pytest.fixture(scope="session")
def docker_compose() -> list[str]:
    """`docker compose`, or skip (fail under CI, where tools/setup/docker.sh must provide it)."""
    command = _docker_compose()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("docker compose is not available (run tools/setup/docker.sh)")
        pytest.skip("docker compose is not available")
    return command


@pytest.fixture
def compose_config(docker_compose: list[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `docker compose -f DIR/docker-compose.yml config ARGS` (no images needed)."""

    def run(out_dir: Path, *args: str, env: dict[str, str] | None = None):
        return subprocess.run(
            [*docker_compose, "-f", str(out_dir / "docker-compose.yml"), "config", *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
            timeout=60,
        )

    return run
