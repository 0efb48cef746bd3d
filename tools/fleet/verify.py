"""The rendered files checked before any is written, so that exit 0 always means a valid stack.

The spec's validators should make every value printable; this is the net under them. The compose
file must parse and pass the compose-spec JSON schema (tools/fleet/data/compose-spec.json), and,
since that schema leaves strings unchecked, the values Compose parses itself must parse: images,
durations, sizes, published ports. Every env file line must be one `KEY=value` that Compose reads
back as written. A problem here is a generator bug, reported as such with the file and field.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools.fleet.fields import IMAGE_RE, MAX_IMAGE_LEN
from tools.fleet.problems import Problem

SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
# Go's time.ParseDuration, as Compose reads durations; it overflows past 2^63 ns (~292 years).
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
_NANOS["h"] = 3600 * 10**9
_MAX_NANOS = 2**63 - 1
# docker/go-units RAMInBytes, bounded well inside an int64 of bytes.
_SIZE = re.compile(r"[0-9]{1,12}(?:\.[0-9]+)? ?[kKmMgGtT]?[iI]?[bB]?")
_PORT = re.compile(r"(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?([0-9]{1,5})(?:-([0-9]{1,5}))?:([0-9]{1,5})")
# An env file line as envfile.quote writes it: bare, single-quoted, or double-quoted with escapes.
_ENV_LINE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*="
    r"(?:(?![\"'])[A-Za-z0-9_./:,@%+=\-\[\]{}\"]*|'[^'\n\r]*'|\"(?:[^\"\\\n\r]|\\.)*\")"
)
_NOTE = "the generator made an invalid file (a bug: please report it with the spec)"


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def _duration_ok(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            return False
        pos = match.end()
        total += float(match.group(1)) * _NANOS[match.group(2)]
    return pos == len(value) and total <= _MAX_NANOS


def _port_ok(value: object) -> bool:
    match = _PORT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return False
    numbers = [int(n) for n in match.groups()[1:] if n is not None]
    return all(1 <= n <= 65535 for n in numbers)


def _service_problems(name: str, service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    at = f"services.{name}"
    image = service.get("image")
    if not isinstance(image, str) or len(image) > MAX_IMAGE_LEN or not IMAGE_RE.fullmatch(image):
        yield f"{at}.image", f"{image!r} is not an image reference"
    durations = [("stop_grace_period", service.get("stop_grace_period"))]
    health = service.get("healthcheck") or {}
    durations += [(f"healthcheck.{k}", health.get(k)) for k in ("interval", "timeout")]
    durations += [("healthcheck.start_period", health.get("start_period"))]
    for key, value in durations:
        if value is not None and not _duration_ok(value):
            yield f"{at}.{key}", f"{value!r} is not a duration Compose reads"
    sizes = [("shm_size", service.get("shm_size"))]
    options = (service.get("logging") or {}).get("options") or {}
    sizes.append(("logging.options.max-size", options.get("max-size")))
    for key, value in sizes:
        if value is not None and not (isinstance(value, str) and _SIZE.fullmatch(value)):
            yield f"{at}.{key}", f"{value!r} is not a size Compose reads"
    for index, port in enumerate(service.get("ports") or []):
        if not _port_ok(port):
            yield f"{at}.ports[{index}]", f"{port!r} is not a published port"


def check_compose(rel: str, text: str) -> list[Problem]:
    """The compose file: YAML, the compose-spec schema, then the strings Compose parses."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [Problem(rel, f"is not YAML ({e}); {_NOTE}")]
    problems = [
        Problem(f"{rel}: {'.'.join(map(str, error.absolute_path)) or '(top)'}", error.message)
        for error in _validator().iter_errors(data)
    ]
    if problems or not isinstance(data, dict):
        return [Problem(p.path, f"{p.message}; {_NOTE}") for p in problems]
    for name, service in (data.get("services") or {}).items():
        for where, message in _service_problems(name, service):
            problems.append(Problem(f"{rel}: {where}", f"{message}; {_NOTE}"))
    return problems


def check_env(rel: str, text: str) -> list[Problem]:
    """An env file: comments, blank lines and one-line `KEY=value` entries only."""
    problems = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#") or not line:
            continue
        if "\r" in line or not _ENV_LINE.fullmatch(line):
            shown = line if len(line) <= 40 else f"{line[:37]}..."
            problems.append(
                Problem(f"{rel}:{number}", f"{shown!r} is not a KEY=value line; {_NOTE}")
            )
    return problems


def check_files(files: dict[str, str]) -> list[Problem]:
    """Every rendered file this module knows how to check, by its kind."""
    problems: list[Problem] = []
    for rel, text in files.items():
        if rel.endswith(".env"):
            problems += check_env(rel, text)
        elif rel == "docker-compose.yml" or rel.endswith("/docker-compose.yml"):
            problems += check_compose(rel, text)
        elif rel.endswith((".yml", ".yaml")):
            try:
                yaml.safe_load(text)
            except yaml.YAMLError as e:
                problems.append(Problem(rel, f"is not YAML ({e}); {_NOTE}"))
    return problems
