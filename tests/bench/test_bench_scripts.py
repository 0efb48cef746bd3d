"""The benchmark scripts still run and print what the docs quote (no timing is asserted here:
figures are read by people, from runs on a quiet machine; see docs/benchmarks.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")


def _run(*argv: str, timeout: float = 240) -> str:
    out = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_core_path_prints_a_checked_ratio_cpu_per_request_and_the_prototype() -> None:
    out = _run(
        "bench/core_path.py",
        *("--duration", "1", "--concurrency", "1", "8", "--cpu", "--rounds", "2", "--prototype"),
    )
    assert "2 round(s) (medians)" in out, out
    rows = re.findall(
        r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+[\d.]+ms\s+[\d.]+ms\s+[\d.]+ms\s+(\d+)$", out, re.M
    )
    assert [r[0] for r in rows] == ["1", "8"], out
    for _, floor, path, ratio, bad in rows:
        assert int(bad) == 0, out  # every answer was the request's own echo
        assert int(floor) > 0 and int(path) > 0, out
        assert abs(float(ratio) - int(path) / int(floor)) < 0.02, out
    cpu = re.findall(
        r"^\s+(1|8)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M
    )
    assert len(cpu) == 2, out
    for row in cpu:
        backend, worker = float(row[1]), float(row[2])
        assert backend > 0 and worker > 0, out  # both processes were measured
    # The prototype ran on the same servers, its answers checked like the path's.
    proto = re.findall(
        r"^\s+(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+ms\s+[\d.]+ms\s+(\d+)\s+([\d.]+)\s+[\d.]+$", out, re.M
    )
    assert [r[0] for r in proto] == ["1", "8"], out
    paths = {r[0]: int(r[2]) for r in rows}
    for c, rps, bad, path_over_proto in proto:
        assert int(bad) == 0 and int(rps) > 0, out
        assert abs(float(path_over_proto) - paths[c] / int(rps)) < 0.02 * paths[c] / int(rps) + 0.01
    # The verdict at c=1 quotes the table's p50, says met or missed by it, and sums the hops.
    floor_p50, path_p50 = re.search(
        r"^\s+1\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+)ms\s+([\d.]+)ms", out, re.M
    ).groups()
    verdict = re.search(
        r"^#   c=1: p50 ([\d.]+) ms: (met|missed) \(prototype [\d.]+ ms; "
        r"hops alone ([\d.]+) \+ ([\d.]+) \+ ([\d.]+) = ([\d.]+) ms",
        out,
        re.M,
    )
    assert verdict, out
    p50, word, floor_part, broker, store, total = verdict.groups()
    assert p50 == path_p50 and floor_part == floor_p50, out
    if abs(float(p50) - 1.0) > 0.005:  # the word judges the unrounded p50
        assert word == ("met" if float(p50) <= 1.0 else "missed"), out
    assert float(broker) > 0 and float(store) > 0, out
    assert abs(float(total) - (float(floor_part) + float(broker) + float(store))) < 0.015, out
    assert "c=64:" not in out, out  # only the concurrencies that ran are judged


def test_ab_runs_a_git_ref_beside_this_checkout() -> None:
    out = _run("bench/ab.py", "--rounds", "1", "--duration", "1", "--concurrency", "4")
    sides = re.findall(r"^\s+1\s+([AB])\s+(\d+)\s+[\d.]+((?:\s+[\d.]+){5})\s*$", out, re.M)
    assert sorted(s[0] for s in sides) == ["A", "B"], out
    assert all(int(s[1]) > 0 for s in sides), out
    for _, _, cells in sides:
        backend, worker, rabbitmq, redis, total = map(float, cells.split())
        # Each process was measured (Redis's share of a 1 s run can be under a clock tick),
        # and the total is their sum.
        assert min(backend, worker, rabbitmq) > 0 and redis >= 0, out
        assert abs(total - (backend + worker + rabbitmq + redis)) < 0.005, out
    assert "BAD" not in out, out
    assert re.search(
        r"# B/A: req/s x[\d.]+, backend CPU x[\d.]+, worker CPU x[\d.]+, rabbitmq CPU x[\d.]+, "
        r"redis CPU x[\d.]+, total CPU x[\d.]+",
        out,
    ), out
    # The baseline's worktree is removed afterwards.
    worktrees = subprocess.run(
        ["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "llmwrap-ab-" not in worktrees, worktrees


def test_broker_hop_prints_latencies() -> None:
    out = _run("bench/broker_hop.py", "--messages", "200")
    rows = re.findall(r"^\s+(True|False)\s+(True|False)\s+(True|False)\s+(\d+) us$", out, re.M)
    assert len(rows) == 5 and all(int(r[3]) > 0 for r in rows), out
    store = re.search(r"^redis publish->subscriber (\d+) us$", out, re.M)
    assert store and int(store.group(1)) > 0, out


def test_streaming_prints_checked_sides_and_both_ratios() -> None:
    out = _run(
        "bench/streaming.py", *("--duration", "1", "--rounds", "1", "--requests", "20", "--cpu")
    )
    rows = re.findall(
        r"^(HTTP floor|chat_completion|v1 stream|v1)\s+(\d+)\s+(\d+)\s+([\d.]+)ms\s+[\d.]+ms\s+"
        r"(-|[\d.]+ms)\s+[\d.]+\s+(-|[\d.]+)\s+(-|[\d.]+)\s+(\d+)$",
        out,
        re.M,
    )
    sides = [(r[0], r[1]) for r in rows]
    assert sides == [
        ("HTTP floor", "1"),
        ("chat_completion", "1"),
        ("v1", "1"),
        ("v1 stream", "1"),
        ("chat_completion", "64"),
        ("v1", "64"),
        ("v1 stream", "64"),
    ], out
    for side, c, rps, _, ttft, _, _, bad in rows:
        assert int(bad) == 0, out  # every answer was the message's own 32 words
        assert int(rps) > 0, out
        assert (ttft != "-") == (side == "v1 stream" and c == "1"), out
    table = {(r[0], r[1]): r for r in rows}
    ref_p50 = float(table["chat_completion", "1"][3])
    ttft = float(table["v1 stream", "1"][4].removesuffix("ms"))
    ref_rps, rps = int(table["chat_completion", "64"][2]), int(table["v1 stream", "64"][2])
    # The verdicts quote the table's figures, their ratios, and say met or missed by them.
    c1 = re.search(
        r"^#   c=1: TTFT p50 ([\d.]+) ms / ([\d.]+) ms = ([\d.]+): (met|missed)$", out, re.M
    )
    assert c1, out
    assert (float(c1[1]), float(c1[2])) == (ttft, ref_p50), out
    assert abs(float(c1[3]) - ttft / ref_p50) < 0.01 + 0.01 * ttft / ref_p50, out
    if abs(float(c1[3]) - 1.5) > 0.01:
        assert c1[4] == ("met" if float(c1[3]) <= 1.5 else "missed"), out
    c64 = re.search(r"^#   c=64: (\d+) / (\d+) req/s = ([\d.]+): (met|missed)$", out, re.M)
    assert c64, out
    assert (int(c64[1]), int(c64[2])) == (rps, ref_rps), out
    assert abs(float(c64[3]) - rps / ref_rps) < 0.01, out
    if abs(float(c64[3]) - 0.5) > 0.01:
        assert c64[4] == ("met" if float(c64[3]) >= 0.5 else "missed"), out
    assert re.search(r"^# a streamed 32-token answer came in \d+ text chunk", out, re.M), out
    # --cpu: every side at both concurrencies; at c=64 the backend and the worker measured (20
    # requests at c=1 can fall under a clock tick).
    cpu = re.findall(r"^(chat_completion|v1 stream|v1)\s+(1|64)\s+([\d.]+)\s+([\d.]+)\s", out, re.M)
    assert len(cpu) == 6, out
    assert all(float(b) > 0 and float(w) > 0 for _, c, b, w in cpu if c == "64"), out
    assert "xrange" in out, out  # the streamed side reads its pieces back from Redis
