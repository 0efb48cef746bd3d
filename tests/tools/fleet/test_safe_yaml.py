"""YAML limits: deep enough and big enough for any fleet, refused before they cost anything."""

from __future__ import annotations

import time

import pytest
import yaml

from tools.fleet import safe_yaml


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_depth_limit_is_exact() -> None:
    assert safe_yaml.load(nested(safe_yaml.MAX_DEPTH)) is not None
    with pytest.raises(yaml.YAMLError, match="nested more than"):
        safe_yaml.load(nested(safe_yaml.MAX_DEPTH + 1))


def test_an_alias_counts_as_deep_as_what_it_names() -> None:
    half = safe_yaml.MAX_DEPTH // 2 + 1
    text = f"a: &x {nested(half)}\nb: {'[' * half}*x{']' * half}\n"
    with pytest.raises(yaml.YAMLError, match="nested more than"):
        safe_yaml.load(text)


def test_ordinary_anchors_still_work() -> None:
    text = "base: &b {x: 1, y: [1, 2]}\nother:\n  z: *b\n"
    assert safe_yaml.load(text) == {
        "base": {"x": 1, "y": [1, 2]},
        "other": {"z": {"x": 1, "y": [1, 2]}},
    }


def test_expanded_size_is_counted_fast() -> None:
    levels = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 40)]
    started = time.monotonic()
    with pytest.raises(yaml.YAMLError, match="aliases are expanded"):
        safe_yaml.load("\n".join(levels))
    assert time.monotonic() - started < 1


def test_duplicate_keys_and_marks() -> None:
    with pytest.raises(yaml.MarkedYAMLError, match="duplicate key 'a'") as info:
        safe_yaml.load("a: 1\nb: 2\na: 3\n")
    assert info.value.problem_mark is not None and info.value.problem_mark.line == 2


@pytest.mark.parametrize("text", ["!!int abc", "!!float x", "!!timestamp 2024-13-01", "2023-02-29"])
def test_bad_values_are_yaml_errors(text: str) -> None:
    with pytest.raises(yaml.MarkedYAMLError, match="is not a valid"):
        safe_yaml.load(f"v: {text}\n")


def test_no_arbitrary_objects() -> None:
    with pytest.raises(yaml.YAMLError):
        safe_yaml.load("!!python/object/apply:os.system [true]\n")
