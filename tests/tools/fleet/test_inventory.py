"""GPU inventory: nvidia-smi's csv, live (a fake nvidia-smi on PATH) or saved."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tools.fleet.inventory import InventoryError, parse, query, read_file

DATA = Path(__file__).parent / "data"
LINE = "0, GPU-1d2c0a7e-52b1-4b6f-9d3e-000000000000, NVIDIA H100 80GB HBM3, 81559"


def test_parse_saved_file() -> None:
    inv = read_file(DATA / "gpus-8xh100.csv")
    assert [g.index for g in inv.gpus] == list(range(8))
    assert inv.gpus[0].name == "NVIDIA H100 80GB HBM3" and inv.gpus[0].memory_mib == 81559
    assert inv.find(3) is inv.gpus[3] and inv.find(inv.gpus[5].uuid) is inv.gpus[5]
    assert inv.find(8) is None
    assert inv.describe().endswith("lists GPUs 0-7")


def test_comments_blank_lines_and_order() -> None:
    text = f"# saved 2026-11-25\n\n1, GPU-b, A10, 22731\n{LINE}\n"
    inv = parse(text, "x.csv")
    assert [g.index for g in inv.gpus] == [0, 1]
    assert inv.gpus[0].csv_line() == LINE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "x.csv: lists no GPUs"),
        (
            "0, GPU-a, H100\n",
            "x.csv:1: expected 4 comma-separated fields (index, uuid, name, memory.total MiB), "
            "got 3",
        ),
        ("a, GPU-a, H100, 1\n", "x.csv:1: GPU index 'a' is not a number"),
        ("0, GPU-a, H100, [N/A]\n", "x.csv:1: memory.total '[N/A]' is not a number of MiB"),
        ("0, 1234, H100, 1\n", "x.csv:1: '1234' is not a GPU UUID"),
        ("0, GPU-a, H100, 1\n0, GPU-b, H100, 1\n", "x.csv:2: GPU 0 (GPU-b) is listed twice"),
    ],
)
def test_bad_inventory(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse(text, "x.csv")
    assert str(caught.value) == message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such file"):
        read_file(tmp_path / "none.csv")


def fake_smi(tmp_path: Path, body: str) -> Path:
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe.parent


def test_query_runs_nvidia_smi_with_the_contract_arguments(tmp_path, monkeypatch, cli) -> None:
    log = tmp_path / "args"
    bindir = fake_smi(tmp_path, f'echo "$@" > {log}\ncat {DATA / "gpus-8xh100.csv"}')
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert len(query().gpus) == 8
    assert log.read_text().split() == [
        "--query-gpu=index,uuid,name,memory.total",
        "--format=csv,noheader,nounits",
    ]
    run = cli("inventory")
    assert run.code == 0 and run.out == (DATA / "gpus-8xh100.csv").read_text()


def test_missing_nvidia_smi_is_one_line_exit_2(tmp_path, monkeypatch, cli) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    run = cli("inventory")
    assert run.code == 2 and run.out == ""
    assert run.lines == [
        "nvidia-smi not found: run this on the GPU host (NVIDIA driver installed), "
        "or pass a saved inventory with --inventory FILE"
    ]


def test_failing_nvidia_smi_is_one_line(tmp_path, monkeypatch, cli) -> None:
    bindir = fake_smi(
        tmp_path,
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."'
        " >&2\n"
        "echo second line >&2\nexit 9",
    )
    monkeypatch.setenv("PATH", str(bindir))
    run = cli("inventory")
    assert run.code == 2
    assert run.lines == [
        "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the "
        "NVIDIA driver."
    ]
