"""An installed wheel renders: `tools.fleet` ships its templates and data (issue 21, item 7).

The wheel is built from a copy of the sources (the checkout gets no build/ or egg-info) with this
venv's setuptools, without build isolation, so building needs no index. A fresh venv installs it
with its `fleet` extra, as a user would (dependencies from pip's configured index), and renders
the example fleet from outside the repository: the output must be the checked-in compose/, byte
for byte, secrets aside.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SOURCES = ("pyproject.toml", "README.md", "services", "tools", "templates")
# Generated fresh by every render into a new folder, so never equal to the checked-in ones.
SECRETS = {"env/secrets.env", "env/prometheus-api-key"}


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout}\n{done.stderr}"
    return done


def _pip(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per session."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools here")
    root = tmp_path_factory.mktemp("wheel")
    (root / "src").mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(source, root / "src" / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, root / "src" / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist", root / "src")
    (built,) = (root / "dist").glob("llm_wrap-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel with its `fleet` extra, as a user installs it; its python."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _pip("--python", python, "install", f"{wheel}[fleet]")
    return python


def test_installed_wheel_renders_the_example(installed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run(
        installed, "-c", "from tools.fleet.render import TEMPLATES; print(TEMPLATES)", cwd=outside
    )
    templates = Path(where.stdout.strip())
    assert templates.is_relative_to(installed.parents[1]) and templates.is_dir(), templates

    out = tmp_path / "out"
    example = REPO / "compose" / "fleet.example.yaml"
    _run(installed, "-m", "tools.fleet", "render", example, "--out", out, cwd=outside)

    rendered = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - SECRETS
    assert {"docker-compose.yml", "monitoring/grafana/dashboards/llm-wrap.json"} <= rendered
    different = [
        rel
        for rel in sorted(rendered)
        if not (REPO / "compose" / rel).is_file()
        or (out / rel).read_bytes() != (REPO / "compose" / rel).read_bytes()
    ]
    assert not different, f"the installed generator's output differs from compose/: {different}"
