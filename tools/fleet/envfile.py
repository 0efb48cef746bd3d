"""Values in compose `env_file`s, written so that Compose reads back exactly what we meant.

Compose interpolates `$VAR` in unquoted and double-quoted values and cuts unquoted ones at ` #`;
single-quoted values are literal. So: plain values stay bare, others are single-quoted, and only a
value holding a `'` is double-quoted with `\\`, `"` and `$` escaped. Tests round-trip tricky values
through `docker compose config`.
"""

from __future__ import annotations

import re

_BARE = re.compile(r"^[A-Za-z0-9_./:,@%+=\-\[\]{}\"]*$")
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def quote(value: str) -> str:
    """One env-file value for `KEY=<here>`; values with newlines are refused upstream."""
    if _BARE.match(value) and not value.startswith(('"', "'")):
        return value
    if "'" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{escaped}"'


def parse(text: str) -> dict[str, str]:
    """Read the env files this tool writes (bare, single- or double-quoted values; `#` comments).

    Only as much of Compose's dotenv dialect as needed to reuse an existing secrets.env.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"cannot read line {line[:40]!r}")
        key, raw = match.groups()
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            value = raw[1:-1]
        elif len(raw) >= 2 and raw[0] == raw[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", raw[1:-1]).replace("$$", "$")
        else:
            value = raw.split(" #", 1)[0].strip()
        values[key] = value
    return values
