"""Render a checked fleet to `DIR/docker-compose.yml` and `DIR/env/*.env`.

Everything is rendered in memory first and written only when the whole fleet is valid; files
whose content did not change are left alone, so output is byte-identical for the same input and
the same existing secrets.env. Templates print values quoted as JSON strings, which YAML reads as
double-quoted scalars: no user value can change the structure of the compose file.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from tools.fleet import credentials, envfile
from tools.fleet.build import build
from tools.fleet.inventory import Inventory
from tools.fleet.plan import Plan, make_plan
from tools.fleet.problems import FleetError, Problem

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
COMPOSE_FILE = "docker-compose.yml"


def _quote(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = _quote
    return env


def render_files(plan: Plan) -> dict[str, str]:
    """Relative path -> content of every generated file except secrets.env."""
    env = environment()
    files = {
        COMPOSE_FILE: env.get_template("docker-compose.yml.j2").render(plan=plan),
        "env/backend.env": env.get_template("backend.env.j2").render(env=plan.backend_env),
    }
    worker_template = env.get_template("worker.env.j2")
    for worker in plan.workers:
        files[worker.env_file] = worker_template.render(worker=worker)
    return files


def secrets_text(values: dict[str, str]) -> str:
    ordered = [k for k in credentials.KEYS if k in values] + [
        k for k in values if k not in credentials.KEYS
    ]
    pairs = [(k, envfile.quote(values[k])) for k in ordered]
    return environment().get_template("secrets.env.j2").render(env=pairs)


def _write(path: Path, content: str, mode: int = 0o644) -> bool:
    """Atomically replace `path` unless it already holds `content`; True when written."""
    try:
        if path.read_text(encoding="utf-8") == content:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


@dataclass
class Rendered:
    """What a render did, for the one-line summary."""

    services: list[str]
    written: list[str]
    removed: list[str]
    warnings: list[Problem]
    secrets_created: bool


def render(fleet_path: Path, out_dir: Path, inventory: Inventory | None = None) -> Rendered:
    """Check, render and write; raise FleetError (having written nothing) on any problem."""
    fleet = build(fleet_path, inventory)
    plan = make_plan(fleet)
    files = render_files(plan)
    for target in (out_dir, out_dir / "env"):
        if target.exists() and not target.is_dir():
            raise FleetError([Problem(str(target), "exists and is not a directory")])
    secrets = credentials.load_or_create(out_dir)
    problems = [p for p in secrets.problems if not p.warning]
    if problems:
        raise FleetError(problems)
    written, removed = [], []
    try:
        (out_dir / "env").mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            if _write(out_dir / rel, content):
                written.append(rel)
        if secrets.write and _write(
            out_dir / credentials.SECRETS_FILE, secrets_text(secrets.values), 0o600
        ):
            written.append(credentials.SECRETS_FILE)
        for stale in sorted((out_dir / "env").glob("worker-*.env")):
            if f"env/{stale.name}" not in files:
                stale.unlink()
                removed.append(f"env/{stale.name}")
    except OSError as e:
        where = e.filename or out_dir
        raise FleetError([Problem(str(where), f"cannot write: {e.strerror or e}")]) from e
    return Rendered(
        services=["backend", "rabbitmq", "redis", *(w.service for w in plan.workers)],
        written=written,
        removed=removed,
        warnings=fleet.warnings + secrets.problems,
        secrets_created=secrets.write,
    )
