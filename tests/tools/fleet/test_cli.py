"""The CLI as users meet it: exit codes, one line per problem, never a traceback."""

from __future__ import annotations

import copy
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DATA = Path(__file__).parent / "data"
INVENTORY = DATA / "gpus-8xh100.csv"
INVALID = sorted((DATA / "invalid").glob("*.yaml"))


def expected_lines(spec: Path) -> list[str]:
    text = spec.with_suffix(".err").read_text()
    return text.format(path=spec, inventory=INVENTORY).splitlines()


@pytest.mark.parametrize("spec", INVALID, ids=lambda p: p.stem)
def test_invalid_fleets(spec: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = cli("render", spec, "--out", out, "--inventory", INVENTORY)
    assert (run.code, run.out) == (2, "")
    assert run.lines == expected_lines(spec)
    assert not out.exists()
    assert cli("validate", spec, "--inventory", INVENTORY).lines == expected_lines(spec)


def test_validate_reports_the_plan(cli) -> None:
    run = cli("validate", REPO / "compose" / "fleet.example.yaml")
    assert run.code == 0 and run.err == ""
    assert run.out.splitlines() == [
        f"{REPO / 'compose' / 'fleet.example.yaml'}: valid, 3 models on 7 GPUs",
        "  worker-llama3-8b    vllm         0",
        "  worker-qwen2.5-32b  vllm         2,3",
        "  worker-llama3-70b   vllm         4,5,6,7",
    ]


def test_missing_files_are_one_line(cli, tmp_path: Path, write_fleet) -> None:
    run = cli("validate", tmp_path / "none.yaml")
    assert (run.code, run.lines) == (2, [f"{tmp_path / 'none.yaml'}: no such file"])
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    run = cli("validate", spec, "--inventory", tmp_path / "none.csv")
    assert (run.code, run.lines) == (2, [f"{tmp_path / 'none.csv'}: no such file"])


def test_unreadable_file(cli, write_fleet) -> None:
    if os.geteuid() != 0:
        spec = write_fleet("models: []\n")
        spec.chmod(0)
        run = cli("validate", spec)
        assert run.code == 2 and len(run.lines) == 1 and "cannot read" in run.lines[0]
        return
    # Root reads everything: run the CLI as `nobody` (setpriv, util-linux) on a file in a
    # folder it may enter, with no read permission on the file.
    assert shutil.which("setpriv"), "setpriv (util-linux) tests an unreadable file as root"
    folder = Path(tempfile.mkdtemp(prefix="llmwrap-unreadable-"))
    try:
        folder.chmod(0o755)
        spec = folder / "fleet.yaml"
        spec.write_text("models: []\n")
        spec.chmod(0)
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            + [sys.executable, "-m", "tools.fleet", "validate", str(spec)],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
    finally:
        shutil.rmtree(folder)
    lines = (done.stdout + done.stderr).splitlines()
    assert (done.returncode, lines) == (2, [f"{spec}: cannot read: Permission denied"])


def test_inventory_from_stdin(tmp_path: Path, write_fleet) -> None:
    spec = write_fleet("models:\n  - {name: a, path: /m/a, gpus: auto}\n")
    done = subprocess.run(
        [sys.executable, "-m", "tools.fleet", "validate", str(spec), "--inventory", "-"],
        input=INVENTORY.read_text(),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "0 (auto)" in done.stdout


@pytest.mark.parametrize(
    "text",
    [
        "models:\n  - name: a\n    gpus: [0\n",
        "",
        "- a\n- b\n",
        "models: 3\n",
        "models:\n  - [1, 2]\n",
        "models:\n  - {name: a, path: /m, gpus: [0]}\n  - {name: a, path: /m, gpus: [0]}\n",
        "{[1]: 2}\n",
        "models: !!python/object/apply:os.system ['true']\n",
        "\x00\x01",
    ],
)
def test_no_traceback_ever(text: str, tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "tools.fleet", "render", str(spec), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.strip()
    assert not (tmp_path / "out").exists()


BASE: dict[str, Any] = {
    "name": "fuzz",
    "backend": {"port": 8000, "replicas": 1},
    "rabbitmq": {"publish": False},
    "models": [
        {"name": "a", "path": "/m/a", "gpus": [0, 1], "env": {"X": "1"}, "engine_args": {}},
        {"name": "b", "backend": "echo"},
        {"name": "c", "path": "/m/c", "gpus": "auto", "gpu_count": 2},
    ],
}
ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "x y",
    "auto",
    [],
    [None],
    {},
    {"k": None},
    [[0]],
    "GPU-x",
    10**30,
]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def test_fuzzed_specs_fail_cleanly(cli, tmp_path: Path) -> None:
    """Every value swapped for an odd one: exit 0 or 2, problems named by path, no exception."""
    rng = random.Random(20261125)
    paths = _paths(BASE)
    spec = tmp_path / "fleet.yaml"
    for _ in range(300):
        data = copy.deepcopy(BASE)
        for _ in range(rng.randint(1, 3)):
            where = rng.choice(paths)
            node = data
            try:
                for part in where[:-1]:
                    node = node[part]
                node[where[-1]] = rng.choice(ODD_VALUES)
            except (KeyError, IndexError, TypeError):
                continue
        spec.write_text(yaml.safe_dump(data))
        run = cli("validate", spec, "--inventory", INVENTORY)
        assert run.code in (0, 2), data
        if run.code == 2:
            assert run.lines and all(": " in line for line in run.lines), run.err


def test_usage_errors_exit_2(cli) -> None:
    with pytest.raises(SystemExit) as caught:
        cli("render", "fleet.yaml")  # --out is required
    assert caught.value.code == 2


def test_docs_and_schema_commands(cli) -> None:
    assert cli("docs").out.startswith("# Fleet spec reference")
    assert '"models"' in cli("schema").out
