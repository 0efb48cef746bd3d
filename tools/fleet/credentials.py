"""The stack's secrets: generated once into `env/secrets.env`, then reused.

RabbitMQ applies `RABBITMQ_DEFAULT_USER/PASS` only when its data volume is empty, so a new
password on every render would lock the stack out of its own broker. Hence: an existing,
consistent secrets.env is never rewritten; missing values are added, nothing else changes.
The compose file only names the file, so no secret ever lands in a file meant for git.

The file also holds the API key (`API_KEYS`, one generated key; ops may list more, comma-separated)
and, with monitoring, Grafana's admin password under the image's own name. A fleet that took
`API_KEYS` from `DIR/.env` before render generated it keeps those keys: they seed the file.
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
API_KEYS = "API_KEYS"
GRAFANA_PASSWORD = "GF_SECURITY_ADMIN_PASSWORD"
# Keys every secrets.env has, in file order; GRAFANA_PASSWORD follows when monitoring is on.
KEYS = ("RABBIT_MQ_LOGIN", "RABBIT_MQ_PASSWORD", "REDIS_PASSWORD", *ALIASES, API_KEYS)
# What a worker on another host than the first gets (links): the broker's and the store's.
WORKER_KEYS = ("RABBIT_MQ_LOGIN", "RABBIT_MQ_PASSWORD", "REDIS_PASSWORD")
_GENERATED = ("RABBIT_MQ_LOGIN", "RABBIT_MQ_PASSWORD", "REDIS_PASSWORD", API_KEYS, GRAFANA_PASSWORD)
# The compose project's own dotenv file, where API_KEYS had to be set before render made one.
DOTENV = ".env"
_FORBIDDEN = {("guest", "guest"), ("admin", "admin")}


def _token() -> str:
    """A URL-safe token that never starts with '-' (redis-server would read it as an option)."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def keys(monitoring: bool) -> tuple[str, ...]:
    """The keys secrets.env must hold for this fleet, in file order."""
    return (*KEYS, GRAFANA_PASSWORD) if monitoring else KEYS


def generate(monitoring: bool = False) -> dict[str, str]:
    values = {
        "RABBIT_MQ_LOGIN": f"llmwrap-{secrets.token_hex(4)}",
        "RABBIT_MQ_PASSWORD": _token(),
        "REDIS_PASSWORD": _token(),
    }
    values |= {alias: values[key] for alias, key in ALIASES.items()}
    values[API_KEYS] = _token()
    if monitoring:
        values[GRAFANA_PASSWORD] = _token()
    return values


def _dotenv_api_keys(out_dir: Path) -> tuple[str | None, list[Problem]]:
    """`API_KEYS` of `out_dir/.env`, the keys a fleet used before render generated one."""
    path = out_dir / DOTENV
    try:
        value = envfile.parse(path.read_text(encoding="utf-8")).get(API_KEYS, "").strip()
    except FileNotFoundError:
        return None, []
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, [Problem(str(path), f"not read for {API_KEYS} ({e}); generated a key", True)]
    if not value:
        return None, []
    note = (
        f"{API_KEYS} copied into {SECRETS_FILE} (the backend's keys live there now); remove it here"
    )
    return value, [Problem(str(path), note, True)]


@dataclass
class Secrets:
    """The values, and whether the file must be (re)written; an existing complete one is not."""

    values: dict[str, str]
    write: bool
    problems: list[Problem]


def load_or_create(out_dir: Path, monitoring: bool = False) -> Secrets:
    """Reuse `out_dir/env/secrets.env` when it exists, completing it if keys are missing."""
    path = out_dir / SECRETS_FILE
    fresh = generate(monitoring)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as e:
        return Secrets({}, False, [Problem(str(path), f"cannot read: {e}")])
    try:
        old = envfile.parse(text) if text is not None else {}
    except ValueError as e:
        return Secrets({}, False, [Problem(str(path), f"{e}; fix it or delete the file")])
    problems: list[Problem] = []
    if not old.get(API_KEYS):
        seed, problems = _dotenv_api_keys(out_dir)
        if seed is not None:
            fresh[API_KEYS] = seed
    if text is None:
        return Secrets(fresh, True, problems)
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
    for key in _GENERATED:
        if key in fresh and not values.get(key):
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
    complete = all(old.get(key) for key in keys(monitoring))
    return Secrets(values, not complete, problems)
