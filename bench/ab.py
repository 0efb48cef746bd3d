"""A/B of the core path: this checkout against a git ref, interleaved in one run.

    python bench/ab.py [--baseline HEAD] [--rounds 5] [--duration 8] [--concurrency 64]
                       [--echo-delay-ms 0] [--prompt-words 0]

On a shared VM one run's req/s moves by 20-30 % while a change worth having moves it by 5 %, so
comparing numbers from two separate runs says nothing. Here both versions run side by side (each
its own backend and echo worker on its own queue, sharing one Redis and one RabbitMQ), and wrk
alternates between them (A B B A A B ...) so slow spells hit both alike. Printed per round and as
medians: req/s, p50, and the CPU each version's backend and worker spent per answered request
(from /proc), which is steadier than req/s, and the CPU the shared RabbitMQ and Redis spent per
request during that side's run (only one side is loaded at a time, so a change to what the
broker is asked to do, e.g. queue arguments, shows there). The baseline is checked out with
`git worktree` into a temporary directory (committed code only; this checkout's uncommitted
changes are the B side). Run from another worktree, that worktree is the B side.

At zero delay (the default) every request is a 4-word prompt answered at once, which measures the
path alone. `--echo-delay-ms 20 --prompt-words 64` gives a model's pace instead: a 64-word prompt
with `tokens_limit` 64, echoed one word per 20 ms (1.28 s per request; each worker takes 128 jobs
at once, so the path, not the worker's slots, is measured). Then req/s is the model's, and the
CPU per answered request is the figure to compare; after each run both sides wait until the
requests still in flight are answered, so they do not load the other side's run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.core_path import (  # noqa: E402
    cpu_by_group,
    echo_worker,
    server_groups,
    start_servers,
    stop_all,
    uvicorn,
    wrk,
)
from tools.local.servers import free_port  # noqa: E402


def start_side(
    name: str, code: Path, env: dict[str, str], tmp: Path
) -> tuple[int, list[subprocess.Popen[bytes]]]:
    """One version's echo worker and backend, on a queue of its own; returns (port, procs)."""
    side_env = dict(
        env, PYTHONPATH=str(code), QUEUE_NAME=f"ab-{name}", HEARTBEAT_FILE=str(tmp / f"{name}.hb")
    )
    worker = echo_worker(side_env, tmp / f"worker-{name}.log", code)
    port = free_port()
    # Run from `code`: `python -m` puts the working directory first on sys.path.
    backend = uvicorn(
        "services.backend.main:app", port, 1, side_env, tmp / f"backend-{name}.log", code
    )
    return port, [worker, backend]


def _row(cells: tuple[str, ...]) -> str:
    return " ".join(f"{c:>8}" for c in cells)


def _nums(row: tuple[float, ...] | list[float]) -> str:
    rps, p50, *ms = row
    return f"{rps:>7.0f} {p50:>7.2f} " + " ".join(f"{v:>8.3f}" for v in ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="HEAD", help="git ref for the A side")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument(
        "--echo-delay-ms", type=float, default=0, help="the echo model's delay per token"
    )
    ap.add_argument(
        "--prompt-words",
        type=int,
        default=0,
        help="words per prompt, answered in full (tokens_limit); 0: a 4-word prompt",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="llmwrap-ab-"))
    base = tmp / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base), args.baseline],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    redis, rabbit, env = start_servers(
        tmp,
        REDIS_PREFIX="ab",
        WORKER_CONCURRENCY="128",
        ECHO_TOKEN_DELAY_MS=f"{args.echo_delay_ms:g}",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sides = {}
        for name, code in (("A", base), ("B", ROOT)):
            port, side_procs = start_side(name, code, env, tmp)
            procs += side_procs
            # The shared servers count for whichever side is loaded at the time.
            groups = {"worker": [side_procs[0].pid], "backend": [side_procs[1].pid]}
            sides[name] = (port, {**groups, **server_groups(rabbit, redis)})
        print(
            f"# A = {args.baseline}, B = this checkout; c={args.concurrency}, "
            f"{args.duration:g} s per run, {args.rounds} rounds, {os.cpu_count()} cores; "
            f"echo {args.echo_delay_ms:g} ms/token, "
            f"{args.prompt_words or 4}-word prompts"
        )
        script_args = (str(args.prompt_words),) if args.prompt_words else ()
        # Until the requests in flight at a run's end are answered.
        drain_s = args.echo_delay_ms * max(args.prompt_words, 4) / 1000
        drain_s += 0.5 if drain_s else 0
        cols = ("backend", "worker", "rabbitmq", "redis", "total")
        print(f"{'round':>5} {'side':>4} {'req/s':>7} {'p50 ms':>7} " + _row(cols))
        results: dict[str, list[tuple[float, ...]]] = {"A": [], "B": []}
        for r in range(args.rounds):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            for name in order:
                port, groups = sides[name]
                before = cpu_by_group(groups)
                out = wrk(port, args.concurrency, args.duration, script_args=script_args)
                after = cpu_by_group(groups)
                time.sleep(drain_s)
                ms = [(after[g] - before[g]) * 1000 / out["n"] for g in cols[:-1]]
                row = (out["rps"], out["p50_ms"], *ms, sum(ms))
                results[name].append(row)
                flag = "  <- BAD ANSWERS" if out["bad"] else ""
                print(f"{r + 1:>5} {name:>4} {_nums(row)}{flag}", flush=True)
        print("# medians (CPU in ms per answered request)")
        med = {
            n: [statistics.median(col) for col in zip(*rows, strict=True)]
            for n, rows in results.items()
        }
        for name in ("A", "B"):
            print(f"{'':>5} {name:>4} {_nums(med[name])}")
        a, b = med["A"], med["B"]
        ratios = ", ".join(f"{c} CPU x{b[i + 2] / a[i + 2]:.2f}" for i, c in enumerate(cols))
        print(f"# B/A: req/s x{b[0] / a[0]:.2f}, {ratios}")
    finally:
        stop_all(procs, rabbit, redis)
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
