"""Field types of the fleet spec that need more than pydantic's own checks.

Each parser runs before pydantic's validation and raises one ValueError with a message a user
can act on, so a bad value gives one readable line instead of one per member of a union.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
_NAME_RE = re.compile(NAME_PATTERN)
_UUID_RE = re.compile(r"^(GPU|MIG)-[A-Za-z0-9][A-Za-z0-9/-]*$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENGINE_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
SIZE_RE = re.compile(r"^[0-9]+[kmg]$")
# A Prometheus duration, in the one-unit form (`15s`, `1m`, `15d`).
DURATION_RE = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$")
_IP_RE = re.compile(r"^[0-9.]+$|^\[?[0-9a-fA-F:]+\]?$")
NETWORK_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

Backend = Literal["vllm", "transformers", "echo", "openai"]
GpuId = int | str
# `worker-<name>` must stay a DNS label (63 characters) so that containers can reach each other.
MAX_NAME_LEN = 63 - len("worker-")


def _describe(value: object) -> str:
    """A short, user-facing rendering of a YAML value for error messages."""
    kind = {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value))
    return kind or repr(value)


def _parse_gpus(value: object) -> object:
    """Normalise `gpus` to 'auto' or a list of int indices / str UUIDs, with one clear message.

    Done before pydantic's own union validation so that a bad item gives one readable error
    instead of one per union member.
    """
    if value is None or value == "auto":
        return value
    if not isinstance(value, list):
        raise ValueError(
            "expected a list of GPU indices or UUIDs (e.g. [0, 1]) or 'auto', "
            f"got {_describe(value)}"
        )
    ids: list[GpuId] = []
    for pos, item in enumerate(value):
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ValueError(f"item {pos} ({_describe(item)}) is not a GPU index or UUID")
        if isinstance(item, int) and item < 0:
            raise ValueError(f"item {pos} ({item}) is not a GPU index (indices start at 0)")
        if isinstance(item, str) and not _UUID_RE.match(item):
            raise ValueError(
                f"item {pos} ({item!r}) is neither a GPU index nor a GPU UUID (GPU-... or MIG-...)"
            )
        if item in ids:
            raise ValueError(f"GPU {item} is listed twice")
        ids.append(item)
    if len({type(i) for i in ids}) > 1:
        raise ValueError("mixes GPU indices and UUIDs; use one kind")
    return ids


def _parse_env(value: object) -> object:
    """Environment values become strings; names must be valid and values one line."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of NAME: value, got {_describe(value)}")
    env: dict[str, str] = {}
    for key, raw in value.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, int | float | str):
            text = str(raw)
        else:
            raise ValueError(f"{key}: expected a string or number, got {_describe(raw)}")
        if any(ord(ch) < 32 for ch in text):
            raise ValueError(f"{key}: values must be one line without control characters")
        env[key] = text
    return env


def _check_json(value: object, where: str) -> None:
    """Engine args travel as JSON: refuse YAML-only types (dates, sets, NaN) with their place."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for pos, item in enumerate(value):
            _check_json(item, f"{where}[{pos}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} cannot be written as JSON")
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise ValueError(f"{where}: {_describe(value)} cannot be written as JSON; quote it")


def _parse_engine_args(value: object) -> object:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of engine argument: value, got {_describe(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not _ENGINE_KEY_RE.match(key):
            hint = " (use underscores, as in Python keyword arguments)" if "-" in str(key) else ""
            raise ValueError(f"{key!r} is not a valid engine argument name{hint}")
        _check_json(item, key)
    return value


GpuList = Annotated[list[GpuId] | Literal["auto"] | None, BeforeValidator(_parse_gpus)]
EnvMap = Annotated[dict[str, str], BeforeValidator(_parse_env)]
EngineArgs = Annotated[dict[str, Any], BeforeValidator(_parse_engine_args)]
Port = Annotated[int, Field(ge=1, le=65535)]


def check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid {what}: use lowercase letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    if len(value) > MAX_NAME_LEN:
        raise ValueError(f"{value!r} is too long for a {what} (at most {MAX_NAME_LEN} characters)")
    return value


def check_ip(value: str) -> str:
    """A host address to publish on (compose checks it in full; this catches names and typos)."""
    if not _IP_RE.match(value):
        raise ValueError(f"{value!r} is not an IP address")
    return value
