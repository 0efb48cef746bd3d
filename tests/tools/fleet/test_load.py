"""Reading FLEET.yaml: every unreadable file is one line naming it, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.fleet.load import load


def lines(path: Path) -> list[str]:
    return [str(p) for p in load(path).problems]


def test_missing_file(tmp_path: Path) -> None:
    assert lines(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_directory(tmp_path: Path) -> None:
    assert lines(tmp_path) == [f"{tmp_path}: is a directory, not a fleet spec"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(b"models: [\xff\xfe]")
    assert lines(path) == [f"{path}: is not UTF-8 text"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty; a fleet spec needs at least a 'models' list"),
        ("# only a comment\n", "is empty; a fleet spec needs at least a 'models' list"),
        ("- name: a\n", "expected a mapping at the top level, got a list"),
        ("just text\n", "expected a mapping at the top level, got 'just text'"),
    ],
)
def test_wrong_top_level(write_fleet, text: str, message: str) -> None:
    path = write_fleet(text)
    assert lines(path) == [f"{path}: {message}"]


def test_yaml_syntax_error_names_line_and_column(write_fleet) -> None:
    path = write_fleet("models:\n  - name: a\n    gpus: [0\n")
    [line] = lines(path)
    assert line.startswith(f"{path}:4:1: invalid YAML: ")


def test_duplicate_keys_are_errors(write_fleet) -> None:
    path = write_fleet("models:\n  - name: a\n    gpus: [0]\n    gpus: [1]\n")
    assert lines(path) == [f"{path}:4:5: invalid YAML: duplicate key 'gpus'"]


def test_tabs_and_multiple_documents(write_fleet) -> None:
    assert lines(write_fleet("models:\n\t- name: a\n"))[0].split(": ")[1] == "invalid YAML"
    assert "invalid YAML" in lines(write_fleet("models: []\n---\nmodels: []\n"))[0]


def test_valid_file(write_fleet) -> None:
    loaded = load(write_fleet("models:\n  - name: a\n    path: /m/a\n    gpus: [0]\n"))
    assert loaded.problems == [] and loaded.spec is not None
    assert loaded.spec.models[0].name == "a"
