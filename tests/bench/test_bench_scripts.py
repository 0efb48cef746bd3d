"""The benchmark scripts still run and print what the docs quote (no timing is asserted here:
figures are read by people, from runs on a quiet machine; see docs/benchmarks.md)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")


def _run(*argv: str, timeout: float = 240, rc: int = 0) -> str:
    out = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == rc, out.stdout + out.stderr
    return out.stdout


@needs_wrk
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


@needs_wrk
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


@needs_wrk
def test_broker_hop_prints_latencies() -> None:
    out = _run("bench/broker_hop.py", "--messages", "200")
    rows = re.findall(r"^\s+(True|False)\s+(True|False)\s+(True|False)\s+(\d+) us$", out, re.M)
    assert len(rows) == 5 and all(int(r[3]) > 0 for r in rows), out
    store = re.search(r"^redis publish->subscriber (\d+) us$", out, re.M)
    assert store and int(store.group(1)) > 0, out


@needs_wrk
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


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_original_runs_beside_this_stack_and_the_floor() -> None:
    if not (ROOT / ".venv-original" / "bin" / "python").exists() and not _pypi_reachable():
        pytest.skip("no .venv-original, and PyPI (to make it) is out of reach")
    out = _run(
        "bench/original.py",
        *("--duration", "1", "--rounds", "1", "--concurrency", "1", "64"),
        timeout=400,
    )
    rows = re.findall(
        r"^\s+(\d+) (this stack|original|HTTP floor)\s+([\d.]+)\s+[\d.]+ms\s+[\d.]+ms\s+(\d+)\s+"
        r"([\d.]+)\s+([\d.]+)ms\s+([\d.]+)ms$",
        out,
        re.M,
    )
    table = {(r[0], r[1]): r for r in rows}
    sides = ("this stack", "original", "HTTP floor")
    assert [k for k in table] == [(c, s) for c in ("1", "64") for s in sides], out
    for (_, side), (_, _, rps, errors, exchanges, server_cpu, client_cpu) in table.items():
        assert float(rps) > 0 and float(server_cpu) > 0 and float(client_cpu) > 0, out
        if side == "original":  # submit, then at least one poll
            assert float(exchanges) >= 2, out
        else:  # every answer was the request's own echo, in one exchange
            assert int(errors) == 0 and float(exchanges) == 1, out
    ratios = re.findall(r"^\s+(1|64)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", out, re.M)
    assert [r[0] for r in ratios] == ["1", "64"], out
    for c, this_orig, this_floor, _, floor_rps in ratios:
        this, orig, floor = (float(table[c, s][2]) for s in sides)
        assert abs(float(this_orig) - this / orig) < 0.05 + 0.01 * this / orig, out
        assert abs(float(this_floor) - this / floor) < 0.01, out
        assert abs(int(floor_rps) - floor) <= 1, out
    assert int(re.search(r"Redis keys deleted after its runs: (\d+)$", out, re.M)[1]) > 0, out
    # The verdict quotes the table's c=64 figures and says met or missed by them.
    verdict = re.search(
        r"^#   c=64: (\d+) / ([\d.]+) req/s = ([\d.]+) x, this stack's errors (\d+): (met|missed)$",
        out,
        re.M,
    )
    assert verdict, out
    this_rps, orig_rps, ratio, errors, word = verdict.groups()
    assert abs(int(this_rps) - float(table["64", "this stack"][2])) <= 1, out
    assert orig_rps == table["64", "original"][2], out
    if abs(float(ratio) - 50) > 0.1:
        assert word == ("met" if float(ratio) >= 50 and errors == "0" else "missed"), out


def test_soak_checks_every_answer_and_prints_the_flatness_table() -> None:
    out = _run("bench/soak.py", *("--duration", "5", "--rate", "20", "--sample", "1"))
    assert "warm-up 2.5 s" in out, out  # half of a short run
    metrics = re.findall(
        r"^(backend RSS MiB|worker RSS MiB|redis keys|redis mem MiB|queue|dead letters|"
        r"jobs waiting)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) (yes|NO)$",
        out,
        re.M,
    )
    assert len(metrics) == 7, out
    table = {m[0]: [float(x) for x in m[1:6]] for m in metrics}
    for _, warm, end, top, limit in table.values():
        assert warm <= limit and end <= limit and top >= end, out
    assert table["backend RSS MiB"][0] > 10 and table["worker RSS MiB"][0] > 10, out
    assert table["redis keys"][2] > table["redis keys"][0], out  # the jobs' records are there
    rows = re.findall(r"^(\S+(?: \S+)?)\s+(\d+)\s+(\d+)\s+(\d+)\s+[\d.]+ms\s+[\d.]+ms$", out, re.M)
    kinds = {r[0]: tuple(map(int, r[1:])) for r in rows}
    assert list(kinds) == [
        "generate",
        "chat_completion",
        "v1",
        "v1 stream",
        "job",
        "job cancel",
        "all",
    ], out
    assert kinds["all"] == (100, 100, 0), out  # 5 s x 20 req/s, each answer its request's own
    assert re.search(r"^# cancels: \d+ cancelled, \d+ finished first \(409\)$", out, re.M), out
    assert re.search(r"^# achieved: 20\.\d req/s sent \(100 in 5\.\d s\)", out, re.M), out
    assert "# errors: 0" in out and "# verdict: PASS (0 errors, every figure flat)" in out, out


def test_soak_fails_on_errors() -> None:
    """A backend that answers too late for its JOB_TIMEOUT: every request is an error, exit 1."""
    out = _run(
        "bench/soak.py",
        *("--duration", "2", "--rate", "5", "--sample", "1", "--job-timeout", "0.05"),
        rc=1,
    )
    assert re.search(r"^#   generate: HTTP 504: \d+$", out, re.M), out
    assert "# verdict: FAIL (" in out, out
