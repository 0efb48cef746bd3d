"""Env-file quoting: what Compose reads back is exactly the value we meant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.fleet.envfile import parse, quote

TRICKY = [
    "",
    "plain",
    "with space",
    "a#b",
    "a #comment-looking",
    "$HOME",
    "${HOME:-x}",
    "$$",
    "it's",
    'it\'s "$HOME" \\n',
    '{"a":1,"b":"x y"}',
    '"quoted"',
    "'single'",
    "back\\slash",
    "ünïcode ✓",
    "=starts=with=equals",
]


@pytest.mark.parametrize("value", TRICKY)
def test_parse_reads_back_quote(value: str) -> None:
    assert parse(f"K={quote(value)}\n") == {"K": value}


def test_plain_values_stay_bare() -> None:
    assert quote("llama3-8b") == "llama3-8b"
    assert quote("0,1,2,3") == "0,1,2,3"
    assert quote('{"enable_prefix_caching":true}') == '{"enable_prefix_caching":true}'
    assert quote("a b") == "'a b'"


def test_compose_reads_back_every_value(tmp_path: Path, compose_config) -> None:
    (tmp_path / "env").mkdir()
    lines = [f"V{i}={quote(v)}" for i, v in enumerate(TRICKY)]
    (tmp_path / "env" / "x.env").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  s:\n    image: scratch\n    env_file: [env/x.env]\n"
    )
    done = compose_config(tmp_path, "--format", "json")
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)["services"]["s"]["environment"]
    # `config` prints a literal `$` as `$$`, its own escape.
    got = {k: (v or "").replace("$$", "$") for k, v in env.items()}
    assert got == {f"V{i}": v for i, v in enumerate(TRICKY)}
