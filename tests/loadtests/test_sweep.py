"""`loadtests/sweep.py` against a real backend and echo worker: the CI run (two short steps
through the gate) and the gate failing on a slowed worker."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tools.local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
STREAM = "/v1/chat/completions stream @echo"


def sweep(
    url: str, out: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_WRAP_", "LOCUST_"))}
    return subprocess.run(
        [sys.executable, "loadtests/sweep.py", url, "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_short_sweep_through_the_gate(stack: Stack, queue: str, tmp_path: Path) -> None:
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=5, MODEL_NAME="echo")
    url = stack.backend(QUEUE_NAME=queue).url
    out = tmp_path / "sweep"
    proc = sweep(
        url,
        out,
        *("--users", "1", "4", "--run-time", "8s"),
        *("--max-fail-ratio", "0", "--max-p99", "20000"),
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "gate passed" in proc.stdout, text
    for users in ("001", "004"):
        for suffix in ("_stats.csv", "_failures.csv", ".html", ".log"):
            assert (out / f"users-{users}{suffix}").stat().st_size > 0, suffix
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "summary.csv", newline="") as f:
        rows = {(r["users"], r["endpoint"]): r for r in csv.DictReader(f)}
    # One user is the streamed /v1 user (weight 2); four are all three endpoints.
    assert int(rows[("1", STREAM)]["requests"]) > 0
    for name in ("/generate @echo", "/chat_completion @echo", STREAM, "all"):
        row = rows[("4", name)]
        assert int(row["requests"]) > 0 and int(row["failures"]) == 0, row
        assert float(row["out_tokens_per_s"]) > 0, row
    for users in ("1", "4"):
        stream = rows[(users, STREAM)]
        assert float(stream["ttft_p50_ms"]) > 0 and float(stream["itl_p50_ms"]) >= 1, stream
        assert float(stream["e2e_p99_ms"]) >= float(stream["ttft_p99_ms"]), stream
        assert stream["gen_p50_ms"] != "" and stream["queue_p50_ms"] != "", stream
    assert rows[("4", "/generate @echo")]["ttft_p50_ms"] == ""


def test_the_gate_fails_on_a_slowed_worker(stack: Stack, queue: str, tmp_path: Path) -> None:
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=200, MODEL_NAME="echo")
    url = stack.backend(QUEUE_NAME=queue).url
    proc = sweep(
        url,
        tmp_path / "gate",
        *("--users", "1", "--run-time", "4s", "--max-p99", "500"),
        *("--", "--llm-max-tokens", "8", "--llm-prompt-sizes", "medium"),
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "gate broken: users 1: /v1/chat/completions stream @echo end-to-end p99" in text, text
    assert (tmp_path / "gate" / "summary.csv").exists()
