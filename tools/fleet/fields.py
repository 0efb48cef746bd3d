"""Field types of the fleet spec that need more than pydantic's own checks.

Each parser runs before pydantic's validation and raises one ValueError with a message a user
can act on, so a bad value gives one readable line instead of one per member of a union.
Patterns are applied with `fullmatch`: `re.match(...$)` lets a trailing newline through, which
would break the compose file or an env file. Numbers are bounded so that every value prints as
something Compose and the services can read.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
_NAME_RE = re.compile(NAME_PATTERN)
_UUID_RE = re.compile(r"^(GPU|MIG)-[A-Za-z0-9][A-Za-z0-9/-]*$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENGINE_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
# Up to six digits: Compose reads sizes into 64-bit byte counts.
SIZE_RE = re.compile(r"^[1-9][0-9]{0,5}[kmg]$")
# A Prometheus duration, in the one-unit form (`15s`, `1m`, `15d`).
DURATION_RE = re.compile(r"^[1-9][0-9]{0,5}(ms|s|m|h|d|w|y)$")
NETWORK_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A DNS name: dot-separated labels of letters, digits and inner hyphens (RFC 1123).
DNS_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# Docker's image reference grammar (distribution/reference), in full.
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?"
)
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
IMAGE_RE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::{_TAG})?(?:@{_DIGEST})?")
REGISTRY_RE = re.compile(rf"{_DOMAIN}(?:/{_PATH_PART})*")
MAX_IMAGE_LEN = 255
# Integers a YAML value may carry into JSON (ENGINE_ARGS) or the environment: 64-bit.
MAX_INT = 2**63 - 1
MAX_GPU_INDEX = 1023

Backend = Literal["vllm", "transformers", "echo", "openai"]
GpuId = int | str
# `worker-<name>` must stay a DNS label (63 characters) so that containers can reach each other.
MAX_NAME_LEN = 63 - len("worker-")


def describe(value: object) -> str:
    """A short, user-facing rendering of a YAML value for error messages."""
    kind = {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value))
    if kind:
        return kind
    if isinstance(value, int) and abs(value) > MAX_INT:
        return "a number too large"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


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
            f"got {describe(value)}"
        )
    ids: list[GpuId] = []
    for pos, item in enumerate(value):
        if isinstance(item, str) and re.fullmatch(r"\s*[0-9]{1,6}\s*", item):
            item = int(item.strip())
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ValueError(f"item {pos} ({describe(item)}) is not a GPU index or UUID")
        if isinstance(item, int) and item < 0:
            raise ValueError(f"item {pos} ({item}) is not a GPU index (indices start at 0)")
        if isinstance(item, int) and item > MAX_GPU_INDEX:
            raise ValueError(f"item {pos} is not a GPU index (at most {MAX_GPU_INDEX})")
        if isinstance(item, str) and (len(item) > 128 or not _UUID_RE.fullmatch(item)):
            raise ValueError(
                f"item {pos} ({describe(item)}) is neither a GPU index nor a GPU UUID "
                "(GPU-... or MIG-...)"
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
        raise ValueError(f"expected a mapping of NAME: value, got {describe(value)}")
    env: dict[str, str] = {}
    for key, raw in value.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.fullmatch(key):
            raise ValueError(f"{describe(key)} is not a valid environment variable name")
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, int) and abs(raw) > MAX_INT:
            raise ValueError(f"{key}: the number is too large")
        elif isinstance(raw, float) and not math.isfinite(raw):
            raise ValueError(f"{key}: {raw} is not a usable value; quote it")
        elif isinstance(raw, int | float | str):
            text = str(raw)
        else:
            raise ValueError(f"{key}: expected a string or number, got {describe(raw)}")
        if any(ord(ch) < 32 for ch in text):
            raise ValueError(f"{key}: values must be one line without control characters")
        env[key] = text
    return env


def _check_json(value: object, where: str) -> None:
    """Engine args travel as JSON: refuse YAML-only types (dates, sets, NaN) with their place."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {describe(key)}")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for pos, item in enumerate(value):
            _check_json(item, f"{where}[{pos}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} cannot be written as JSON")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ValueError(f"{where}: the number is too large (at most 64-bit integers)")
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise ValueError(f"{where}: {describe(value)} cannot be written as JSON; quote it")


def _parse_engine_args(value: object) -> object:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of engine argument: value, got {describe(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not _ENGINE_KEY_RE.fullmatch(key):
            hint = " (use underscores, as in Python keyword arguments)" if "-" in str(key) else ""
            raise ValueError(f"{describe(key)} is not a valid engine argument name{hint}")
        _check_json(item, key)
    return value


GpuList = Annotated[list[GpuId] | Literal["auto"] | None, BeforeValidator(_parse_gpus)]
EnvMap = Annotated[dict[str, str], BeforeValidator(_parse_env)]
EngineArgs = Annotated[dict[str, Any], BeforeValidator(_parse_engine_args)]
Port = Annotated[int, Field(ge=1, le=65535)]


def check_name(value: str, what: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{describe(value)} is not a valid {what}: use lowercase letters, digits, '-', '_' "
            "and '.', starting with a letter or digit"
        )
    if len(value) > MAX_NAME_LEN:
        raise ValueError(
            f"{describe(value)} is too long for a {what} (at most {MAX_NAME_LEN} characters)"
        )
    return value


def check_ip(value: str) -> str:
    """A host address to publish on: an IPv4 or IPv6 address (brackets allowed around IPv6)."""
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        raise ValueError(f"{describe(value)} is not an IP address") from None
    if "%" in bare or (address.version == 4 and bare != value):
        raise ValueError(f"{describe(value)} is not an IP address")
    return value


def check_image(value: str) -> str:
    """An image reference Docker accepts (`[registry/]name[:tag][@digest]`)."""
    if len(value) > MAX_IMAGE_LEN or not IMAGE_RE.fullmatch(value):
        raise ValueError(
            f"{describe(value)} is not a valid image reference "
            "(e.g. llmwrap/backend:0.1.0 or registry.local:5000/redis:7.2-alpine)"
        )
    return value


def check_no_control(value: str, what: str) -> str:
    """A value printed into a compose or env file: one line, no control characters."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{describe(value)}: {what} must be one line without control characters")
    return value
