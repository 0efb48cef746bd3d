"""tools/images scripts: deps.py's output, build.sh's arguments, shell syntax; no Docker needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.images.dockercli import BUILD_SH, ROOT

IMAGES = ROOT / "tools" / "images"
DEPS = IMAGES / "deps.py"
SCRIPTS = [
    BUILD_SH,
    IMAGES / "base.sh",
    IMAGES / "pip-install.sh",
    IMAGES / "rabbitmq" / "docker-entrypoint.sh",
    IMAGES / "redis" / "docker-entrypoint.sh",
]


def deps(pyproject: Path, *extras: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEPS), str(pyproject), *extras], capture_output=True, text=True
    )


@pytest.mark.parametrize("extras", [(), ("backend",), ("worker", "transformers"), ("worker",)])
def test_deps_lists_core_and_extras_of_the_real_pyproject(extras: tuple[str, ...]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = list(project["dependencies"])
    for extra in extras:
        expected += [r for r in project["optional-dependencies"][extra] if r not in expected]
    proc = deps(ROOT / "pyproject.toml", *extras)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected


def test_deps_expands_self_references_and_refuses_unknown_extras(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "llm-wrap"\nversion = "0"\ndependencies = ["a==1"]\n'
        '[project.optional-dependencies]\nx = ["b==2", "a==1"]\n'
        'all = ["llm_wrap[x]", "c[extra]==3"]\n'
    )
    assert deps(pyproject, "all").stdout.splitlines() == ["a==1", "b==2", "c[extra]==3"]
    bad = deps(pyproject, "nope")
    assert bad.returncode != 0
    assert "unknown extra(s) nope" in bad.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(IMAGES)))
def test_script_syntax(script: Path) -> None:
    shell = "bash" if script.read_text().startswith("#!/usr/bin/env bash") else "sh"
    proc = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck() -> None:
    proc = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_build_sh_help_and_bad_arguments() -> None:
    ok = subprocess.run(["bash", str(BUILD_SH), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--offline" in ok.stdout and "--with-gpu" in ok.stdout
    for args in (["--bogus"], ["--only", "backend,nope"]):
        bad = subprocess.run(["bash", str(BUILD_SH), *args], capture_output=True, text=True)
        assert bad.returncode == 2, args
        assert bad.stderr.strip().splitlines()[-1].startswith("[images]")


def test_build_sh_names_the_images_the_compose_files_use() -> None:
    text = BUILD_SH.read_text()
    for image in (
        "llmwrap/$name:$version",
        "llmwrap/rabbitmq:3.10-debian",
        "llmwrap/redis:7.0-debian",
    ):
        assert image in text
    assert "ALL_NAMES=(backend worker-cpu worker-gpu rabbitmq redis)" in text
