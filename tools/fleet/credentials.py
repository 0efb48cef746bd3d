"""Broker and store credentials: generated once into `env/secrets.env`, then reused.

RabbitMQ applies `RABBITMQ_DEFAULT_USER/PASS` only when its data volume is empty, so a new
password on every render would lock the stack out of its own broker. Hence: an existing,
consistent secrets.env is never rewritten; missing values are added, nothing else changes.
The compose file only names the file, so no secret ever lands in a file meant for git.
"""

from __future__ import annotations

import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from tools.fleet import envfile
from tools.fleet.problems import Problem

SECRETS_FILE = "env/secrets.env"
# (key, the key whose value it must equal): the rabbitmq image reads its own names.
ALIASES = {
    "RABBITMQ_DEFAULT_USER": "RABBIT_MQ_LOGIN",
    "RABBITMQ_DEFAULT_PASS": "RABBIT_MQ_PASSWORD",
}
KEYS = ("RABBIT_MQ_LOGIN", "RABBIT_MQ_PASSWORD", "REDIS_PASSWORD", *ALIASES)
_FORBIDDEN = {("guest", "guest"), ("admin", "admin")}


def _token() -> str:
    """A URL-safe token that never starts with '-' (redis-server would read it as an option)."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def generate() -> dict[str, str]:
    values = {
        "RABBIT_MQ_LOGIN": f"llmwrap-{secrets.token_hex(4)}",
        "RABBIT_MQ_PASSWORD": _token(),
        "REDIS_PASSWORD": _token(),
    }
    return {**values, **{alias: values[key] for alias, key in ALIASES.items()}}


@dataclass
class Secrets:
    """The values, and whether the file must be (re)written; an existing complete one is not."""

    values: dict[str, str]
    write: bool
    problems: list[Problem]


def load_or_create(out_dir: Path) -> Secrets:
    """Reuse `out_dir/env/secrets.env` when it exists, completing it if keys are missing."""
    path = out_dir / SECRETS_FILE
    fresh = generate()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Secrets(fresh, True, [])
    except (OSError, UnicodeDecodeError) as e:
        return Secrets({}, False, [Problem(str(path), f"cannot read: {e}")])
    try:
        old = envfile.parse(text)
    except ValueError as e:
        return Secrets({}, False, [Problem(str(path), f"{e}; fix it or delete the file")])
    problems: list[Problem] = []
    values = dict(old)
    for alias, key in ALIASES.items():
        if key in values and alias in values and values[key] != values[alias]:
            problems.append(
                Problem(
                    str(path),
                    f"{alias} differs from {key}; make them equal (RabbitMQ keeps the user "
                    "it was first started with)",
                )
            )
        if key not in values and alias in values:
            values[key] = values[alias]
    for key in ("RABBIT_MQ_LOGIN", "RABBIT_MQ_PASSWORD", "REDIS_PASSWORD"):
        if not values.get(key):
            values[key] = fresh[key]
    for alias, key in ALIASES.items():
        values.setdefault(alias, values[key])
    if (values["RABBIT_MQ_LOGIN"], values["RABBIT_MQ_PASSWORD"]) in _FORBIDDEN:
        problems.append(Problem(str(path), "refusing the default RabbitMQ credentials; set others"))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        problems.append(
            Problem(str(path), f"is readable by others (mode {mode:04o}); chmod 600 it", True)
        )
    complete = all(key in old for key in KEYS)
    return Secrets(values, not complete, problems)
