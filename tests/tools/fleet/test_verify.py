"""The net under the validators: render checks its own output before writing any of it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tools.fleet import verify

# The module, not the function `tools.fleet.render` that the package re-exports.
render_module = importlib.import_module("tools.fleet.render")

ECHO = "models:\n  - {name: a, backend: echo}\n"


@pytest.fixture
def files(cli, write_fleet, tmp_path: Path) -> dict[str, str]:
    """What render writes for a small fleet, read back."""
    out = tmp_path / "good"
    assert cli("render", write_fleet(ECHO), "--out", out).code == 0
    return {
        str(p.relative_to(out)): p.read_text()
        for p in out.rglob("*")
        if p.is_file() and p.name != "secrets.env"
    }


def test_rendered_output_passes(files: dict[str, str]) -> None:
    assert verify.check_files(files) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('image: "llmwrap/backend:0.1.0"', 'image: ""', "services.backend.image: '' is not"),
        ("stop_grace_period: 300s", "stop_grace_period: " + "9" * 400 + "s", "stop_grace_period"),
        ("interval: 10s", "interval: 10 seconds", "services.rabbitmq.healthcheck.interval"),
        ('max-size: "10m"', 'max-size: "10 megs"', "logging.options.max-size"),
        ('"0.0.0.0:8000:8000"', '"0.0.0.0:80000:8000"', "services.backend.ports[0]"),
        ('restart: "unless-stopped"', "restart: [1]", "services.rabbitmq.restart"),
        ("    cap_drop: [ALL]\n", "    cap_drop: ALL\n", "cap_drop: 'ALL' is not of type 'array'"),
    ],
)
def test_what_compose_would_reject_is_found(files, old: str, new: str, expected: str) -> None:
    compose = files["docker-compose.yml"]
    assert old in compose
    problems = verify.check_files({"docker-compose.yml": compose.replace(old, new, 1)})
    assert problems and expected in str(problems[0]), problems
    assert "a bug: please report it" in str(problems[0])


@pytest.mark.parametrize(
    "line",
    ["NAME='a\n", "NAME=a b", 'NAME="a', "NAME=a\r", "1NAME=a", "just text"],
)
def test_env_lines_must_read_back_as_written(line: str) -> None:
    assert verify.check_env("env/x.env", f"# comment\nGOOD=1\n{line}\n")


def test_render_writes_nothing_when_its_output_is_invalid(
    cli, write_fleet, tmp_path: Path, monkeypatch
) -> None:
    real = render_module.render_files

    def broken(plan, mon=None):  # type: ignore[no-untyped-def]
        files = real(plan, mon)
        files["env/backend.env"] += "BROKEN='one\ntwo'\n"
        return files

    monkeypatch.setattr(render_module, "render_files", broken)
    out = tmp_path / "out"
    run = cli("render", write_fleet(ECHO), "--out", out)
    assert run.code == 2 and not out.exists()
    assert run.lines == [
        'env/backend.env:12: "BROKEN=\'one" is not a KEY=value line; the generator made an '
        "invalid file (a bug: please report it with the spec)",
        'env/backend.env:13: "two\'" is not a KEY=value line; the generator made an invalid '
        "file (a bug: please report it with the spec)",
    ]
    assert cli("validate", write_fleet(ECHO)).code == 2


def test_an_unexpected_error_is_one_line(cli, write_fleet, tmp_path: Path, monkeypatch) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(render_module, "make_plan", boom)
    run = cli("render", write_fleet(ECHO), "--out", tmp_path / "out")
    assert run.code == 2 and not (tmp_path / "out").exists()
    assert run.lines == [
        "internal error (please report it with the spec): RuntimeError: boom\\nsecond line"
    ]
