"""Run the load test at several user counts and gate on the results.

    python loadtests/sweep.py http://127.0.0.1:8000 --users 1 4 16 64 --run-time 30s \\
        --max-fail-ratio 0.01 --max-p99 5000 [-- more Locust options, e.g. --llm-max-tokens 64]

Each step is one headless Locust run (`locust -f loadtests/locustfile.py`) with all its users
started at once (unless --spawn-rate), its CSVs (`users-NNN_stats.csv`, `_failures.csv`...), HTML
report and log written to the output folder. Then `summary.csv` (a row per step and endpoint, and
one `all` row per step), `sweep.png` (throughput and latencies against users) and the gate: exit 1
when a step's failure ratio or an endpoint's end-to-end p99 passes its limit, 2 when a step could
not be run. The LLM options (`--llm-*`, or `LLM_WRAP_*` variables) are Locust's: pass them after
`--`, or set the variables.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

from llmload import plot, report

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    cut = argv.index("--") if "--" in argv else len(argv)
    ours, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(
        prog="sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("url", help="the deployment, e.g. http://127.0.0.1:8000")
    p.add_argument(
        "--users", type=int, nargs="+", default=[1, 4, 16, 64, 128], help="user counts, a step each"
    )
    p.add_argument("--run-time", default="30s", help="each step's length (Locust's --run-time)")
    p.add_argument("--spawn-rate", type=float, help="users started per second (default: all)")
    p.add_argument("--out", type=Path, help="output folder (default loadtests/results/DATE)")
    p.add_argument("--max-fail-ratio", type=float, help="gate: failed / all requests of a step")
    p.add_argument("--max-p99", type=float, help="gate: end-to-end p99 of any endpoint, ms")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first broken step")
    p.add_argument("--title", default="", help="the plot's title (default: URL and date)")
    args = p.parse_args(ours)
    if any(u < 1 for u in args.users):
        p.error("--users: each step needs at least 1 user")
    return args, extra


def locust_command(
    args: argparse.Namespace, users: int, prefix: Path, extra: list[str]
) -> list[str]:
    rate = args.spawn_rate or users
    return [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", args.url),
        *("--headless", "--only-summary", "-u", str(users), "-r", f"{rate:g}"),
        *("-t", args.run_time, "--csv", str(prefix), "--html", f"{prefix}.html"),
        *extra,
    ]


def run_step(
    args: argparse.Namespace, users: int, out: Path, extra: list[str]
) -> list[report.Row] | None:
    prefix = out / f"users-{users:03d}"
    log = prefix.with_suffix(".log")
    with open(log, "wb") as f:
        proc = subprocess.run(
            locust_command(args, users, prefix, extra), stdout=f, stderr=subprocess.STDOUT
        )
    stats = prefix.with_name(prefix.name + "_stats.csv")
    # Locust exits 1 when any request failed: the gate judges those; anything else is a crash.
    if proc.returncode not in (0, 1) or not stats.exists():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        sys.stderr.write(f"step {users} users: locust exited {proc.returncode}; {log}:\n")
        sys.stderr.write("\n".join(tail) + "\n")
        return None
    return report.from_csv(prefix)


def gate(args: argparse.Namespace, users: int, rows: list[report.Row]) -> list[str]:
    """What this step broke, one line each."""
    broken = []
    total = rows[-1]
    if args.max_fail_ratio is not None and total.fail_ratio > args.max_fail_ratio:
        broken.append(
            f"users {users}: failure ratio {total.fail_ratio:.4f} > {args.max_fail_ratio:g} "
            f"({total.failures} of {total.requests})"
        )
    if args.max_p99 is not None:
        for row in rows[:-1] if len(rows) > 1 else rows:
            if row.e2e_p99 is not None and row.e2e_p99 > args.max_p99:
                broken.append(
                    f"users {users}: {row.endpoint} end-to-end p99 {row.e2e_p99:.0f} ms > "
                    f"{args.max_p99:g} ms"
                )
    if total.requests == 0:
        broken.append(f"users {users}: no request was answered")
    return broken


def write_summary(path: Path, steps: list[plot.Step]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["users", *report.CSV_FIELDS])
        w.writeheader()
        for users, rows in steps:
            for row in rows:
                w.writerow({"users": users, **row.as_csv()})


def step_line(users: int, rows: list[report.Row]) -> str:
    t = rows[-1]
    worst = max((r.e2e_p99 for r in rows if r.e2e_p99 is not None), default=None)
    ttft = next((r.ttft_p50 for r in rows if r.ttft_p50 is not None), None)
    return (
        f"users {users:>4}: {t.requests:>6} requests, {100 * t.fail_ratio:5.2f}% failed, "
        f"{t.rps:8.2f} req/s, {t.out_tok_s:9.1f} output tok/s, worst e2e p99 "
        f"{'-' if worst is None else f'{worst:.0f}'} ms, TTFT p50 "
        f"{'-' if ttft is None else f'{ttft:.0f}'} ms\n"
    )


def main(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    out = args.out or HERE / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    steps: list[plot.Step] = []
    broken: list[str] = []
    crashed = False
    for users in args.users:
        rows = run_step(args, users, out, extra)
        if rows is None:
            crashed = True
            break
        steps.append((users, rows))
        sys.stdout.write(step_line(users, rows))
        sys.stdout.flush()
        broken += gate(args, users, rows)
        if broken and args.fail_fast:
            break
    if steps:
        write_summary(out / "summary.csv", steps)
        title = args.title or f"llm-wrap load sweep: {args.url}, {time.strftime('%Y-%m-%d')}"
        plot.plot(steps, out / "sweep.png", title)
        sys.stdout.write(f"results: {out} (summary.csv, sweep.png, users-NNN.html)\n")
    for line in broken:
        sys.stdout.write(f"gate broken: {line}\n")
    if crashed:
        return 2
    if broken:
        return 1
    if args.max_fail_ratio is not None or args.max_p99 is not None:
        sys.stdout.write("gate passed\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
