"""Core-path benchmark: req/s and p50/p99 through HTTP -> RabbitMQ -> worker -> Redis -> HTTP,
next to an HTTP-only floor measured in the same run with the same client (wrk).

    python bench/core_path.py [--duration 6] [--rounds 3] [--concurrency 1 16 64] [--cpu]
                              [--backend-procs 1] [--floor-procs N] [--workers 1]
                              [--worker-concurrency 128] [--no-prototype]

Starts private Redis and RabbitMQ (Debian packages), an echo worker at zero delay and the backend,
then runs wrk against the floor app and the full path at each concurrency. Every response is
checked (status 200 and the request's own echo); a run with bad answers is flagged. Needs `wrk`
(apt-get install wrk). `--cpu` also prints the CPU time each process spent per answered request
(from /proc; steadier than req/s on a shared machine, and it says where the time goes).
Each side runs `--rounds` times per concurrency, interleaved, and medians are printed (one run
on a shared VM varies by +-15 %). The best-case prototype the target was taken from
(`bench/prototype.py`) runs too, on the same servers (`--no-prototype` skips it): the target's
figures came from another VM, and the prototype's row says what this one allows. Last, the
target is printed met or missed; at c=1 beside it the hops alone (the floor's p50, then the broker
and the Redis hop timed by `bench/broker_hop.py` on the same servers): the latency no code on
this path can go under on this machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.broker_hop import hop, store_hop  # noqa: E402
from tools.local.servers import RabbitServer, RedisServer, free_port  # noqa: E402
from tools.local.stack import start_backend, start_worker  # noqa: E402

LUA = ROOT / "bench" / "check.lua"


def _generates(url: str) -> bool:
    """The path answers a job (so its worker is up too), not only its health check."""
    return httpx.post(url + "/generate", json={"content": "warm"}, timeout=5).status_code == 200


def uvicorn(
    app: str, port: int, procs: int, env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """`app` served on `port` (tools/local/stack.py starts it), once it answers a job."""
    p = start_backend(env, log, port=port, app=app, procs=procs, probe=_generates, cwd=cwd)
    assert p.proc is not None
    return p.proc


def start_servers(tmp: Path, **env: str) -> tuple[RedisServer, RabbitServer, dict[str, str]]:
    """Private Redis and RabbitMQ under `tmp`, and the environment that points services at them."""
    (tmp / "redis").mkdir()
    (tmp / "rabbit").mkdir()
    redis = RedisServer(tmp / "redis").start()
    rabbit = RabbitServer(tmp / "rabbit").start()
    full_env = dict(
        os.environ,
        REDIS_PORT=str(redis.port),
        RABBIT_MQ_PORT=str(rabbit.port),
        MODEL_BACKEND="echo",
        LOG_LEVEL="WARNING",
        **env,
    )
    return redis, rabbit, full_env


def python(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """A Python process of this interpreter, its output appended to `log`."""
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=cwd, stdout=open(log, "ab"), stderr=subprocess.STDOUT
    )


def echo_worker(env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    proc = start_worker(env, log, cwd=cwd).proc
    assert proc is not None
    return proc


def server_groups(rabbit: RabbitServer, redis: RedisServer) -> dict[str, list[int]]:
    """The servers' processes, as `cpu_by_group` takes them."""
    return {
        "rabbitmq": [rabbit.proc.pid] if rabbit.proc else [],
        "redis": [redis.proc.pid] if redis.proc else [],
    }


def _send(p: subprocess.Popen[bytes], sig: int, group: bool) -> None:
    if group:
        os.killpg(p.pid, sig)
    else:
        p.send_signal(sig)


def stop_all(
    procs: list[subprocess.Popen[bytes]], rabbit: RabbitServer, redis: RedisServer
) -> None:
    """One at a time, in reverse start order (backends before workers): a backend finishes its
    in-flight requests while the worker still runs (stopping both at once leaves those jobs
    queued for a worker that never comes)."""
    for p in reversed(procs):
        # A process started in a session of its own (a vLLM worker or server) is stopped with
        # its process group: its engine processes too, even when it has to be killed.
        group = p.poll() is None and os.getpgid(p.pid) == p.pid
        _send(p, signal.SIGTERM, group)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            print(f"# {p.args[2:4]} did not stop within 30 s; killed", file=sys.stderr)
            _send(p, signal.SIGKILL, group)
            p.wait()
    rabbit.stop()
    redis.stop()


def wrk(
    port: int, conns: int, duration: float, script: Path = LUA, script_args: tuple[str, ...] = ()
) -> dict[str, float]:
    """One wrk run with a checking script that prints BAD, P50_US, P99_US, REQS and SECS
    (`check.lua`'s `done()`); `script_args` are passed to the script's `init()`."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            *(["--", *script_args] if script_args else []),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    vals = dict(
        line.split()
        for line in out.splitlines()
        if line.split()[:1] and line.split()[0] in ("BAD", "P50_US", "P99_US", "REQS", "SECS")
    )
    errors = 0
    for line in out.splitlines():
        if "Non-2xx" in line or "Socket errors" in line:
            errors += sum(int(t.rstrip(",")) for t in line.split() if t.rstrip(",").isdigit())
    reqs, secs = float(vals["REQS"]), float(vals["SECS"])
    return {
        "rps": reqs / secs,
        "p50_ms": int(vals["P50_US"]) / 1000,
        "p99_ms": int(vals["P99_US"]) / 1000,
        "bad": int(vals["BAD"]) + errors,
        "n": reqs,
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over rounds; bad answers and requests are summed."""
    merged = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
    return {**merged, "bad": sum(r["bad"] for r in runs), "n": sum(r["n"] for r in runs)}


def cpu_by_group(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (utime + stime) of each group's processes and their live descendants, from
    one pass over /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the name: state, ppid, ..., utime (14th field overall) and stime (15th).
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals = {}
    for group, roots in groups.items():
        total, todo = 0.0, list(roots)
        while todo:
            pid = todo.pop()
            total += stats.get(pid, (0, 0.0))[1]
            todo += children.get(pid, [])
        totals[group] = total
    return totals


def prototype_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return python([str(ROOT / "bench" / "prototype.py")], env, log)


Run = dict[str, float]  # one wrk figure set (median_run)
# By concurrency: the floor's, the path's and (when it ran) the prototype's medians.
Results = dict[int, tuple[Run, Run, Run | None]]


def print_prototype(results: Results) -> None:
    """The prototype's runs beside the path's: each run right after the path's at the same c."""
    print("# best-case prototype (bench/prototype.py), same servers and client, run after the path")
    print(
        f"{'c':>4} {'proto req/s':>12} {'ratio':>6} {'proto p50':>10} {'proto p99':>10} {'bad':>4}"
        f" {'path/proto req/s':>17} {'path/proto p50':>15}"
    )
    for c, (floor, path, proto) in results.items():
        if proto is None:
            continue
        flag = "" if proto["bad"] == 0 else "  <- BAD ANSWERS"
        print(
            f"{c:>4} {proto['rps']:>12.0f} {proto['rps'] / floor['rps']:>6.2f} "
            f"{proto['p50_ms']:>8.2f}ms {proto['p99_ms']:>8.2f}ms {proto['bad']:>4} "
            f"{path['rps'] / proto['rps']:>17.2f} {path['p50_ms'] / proto['p50_ms']:>15.2f}{flag}",
            flush=True,
        )


TARGET_RATIO_C64 = 0.30  # x the floor's req/s at c=64 (docs/broker-path-limit.md)
TARGET_P50_C1_MS = 1.0  # p50 at c=1


def hops_ms(rabbit: RabbitServer, redis: RedisServer, n: int = 1000) -> tuple[float, float]:
    """The two hops every job crosses, timed alone on the same servers: broker (persistent,
    priority queue, per-message TTL, as the backend publishes) and Redis pub/sub, p50 in ms."""

    async def both() -> tuple[float, float]:
        broker = await hop(rabbit.port, n, persistent=True, priority=True, ttl=True)
        return broker / 1000, await store_hop(redis.port, n) / 1000

    return uvloop.run(both())


def print_verdict(results: Results, hops: tuple[float, float] | None) -> None:
    """The benchmark's target, met or missed, with what the same machine allows beside it: the
    prototype the target came from, and at c=1 the hops alone (HTTP floor + broker + Redis,
    none of the backend's or worker's own work), which no design on this path can go under."""
    print(
        f"# target: c=64 >= {TARGET_RATIO_C64:.2f} x floor req/s, "
        f"c=1 p50 <= {TARGET_P50_C1_MS:g} ms (docs/broker-path-limit.md)"
    )
    if 64 in results:
        floor, path, proto = results[64]
        ratio = path["rps"] / floor["rps"]
        beside = f" (prototype {proto['rps'] / floor['rps']:.2f})" if proto else ""
        met = "met" if ratio >= TARGET_RATIO_C64 else "missed"
        print(f"#   c=64: {ratio:.2f} x floor: {met}{beside}")
    if 1 in results:
        floor, path, proto = results[1]
        met = "met" if path["p50_ms"] <= TARGET_P50_C1_MS else "missed"
        beside = [f"prototype {proto['p50_ms']:.2f} ms"] if proto else []
        if hops:
            broker, store = hops
            beside.append(
                f"hops alone {floor['p50_ms']:.2f} + {broker:.2f} + {store:.2f} = "
                f"{floor['p50_ms'] + broker + store:.2f} ms (HTTP floor + broker + Redis)"
            )
        extra = f" ({'; '.join(beside)})" if beside else ""
        print(f"#   c=1: p50 {path['p50_ms']:.2f} ms: {met}{extra}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6, help="seconds per wrk run")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per side and concurrency, interleaved; medians are printed",
    )
    ap.add_argument("--backend-procs", type=int, default=1, help="uvicorn --workers (backend)")
    ap.add_argument(
        "--floor-procs",
        type=int,
        help="uvicorn --workers for the floor (default: as the backend; the target in "
        "docs/broker-path-limit.md compares a 2-process path with a 1-process floor)",
    )
    ap.add_argument("--workers", type=int, default=1, help="echo worker processes")
    ap.add_argument("--worker-concurrency", type=int, default=128)
    ap.add_argument("--cpu", action="store_true", help="CPU ms per request, by process")
    ap.add_argument(
        "--prototype",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the best-case prototype of docs/broker-path-limit.md "
        "(bench/prototype.py) on the same servers, with as many HTTP processes as the backend "
        "(default: on)",
    )
    args = ap.parse_args()
    floor_procs = args.floor_procs or args.backend_procs
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="llmwrap-bench-"))
    redis, rabbit, env = start_servers(
        tmp,
        QUEUE_NAME="bench",
        REDIS_PREFIX="bench",
        WORKER_CONCURRENCY=str(args.worker_concurrency),
        PYTHONPATH=str(ROOT),
        HEARTBEAT_FILE=str(tmp / "worker.alive"),
    )
    procs: list[subprocess.Popen[bytes]] = []  # stopped in reverse: HTTP sides before workers
    try:
        if args.prototype:
            procs.append(prototype_worker(env, tmp / "prototype-worker.log"))
        workers = [echo_worker(env, tmp / f"worker{i}.log") for i in range(args.workers)]
        procs += workers
        floor_port, full_port, proto_port = free_port(), free_port(), free_port()
        procs.append(
            uvicorn("bench.floor_app:app", floor_port, floor_procs, env, tmp / "floor.log")
        )
        backend = uvicorn(
            "services.backend.main:app", full_port, args.backend_procs, env, tmp / "backend.log"
        )
        procs.append(backend)
        if args.prototype:
            procs.append(
                uvicorn(
                    "bench.prototype:app", proto_port, args.backend_procs, env, tmp / "proto.log"
                )
            )
        print(
            f"# core path vs HTTP floor; backend procs {args.backend_procs}, floor procs "
            f"{floor_procs}, echo workers "
            f"{args.workers} (concurrency {args.worker_concurrency}), {args.duration:g} s per run, "
            f"{args.rounds} round(s) (medians), "
            f"{os.cpu_count()} cores"
        )
        print(
            f"{'c':>4} {'floor req/s':>12} {'path req/s':>11} {'ratio':>6} "
            f"{'floor p50':>10} {'path p50':>9} {'path p99':>9} {'bad':>4}"
        )
        groups = {
            "backend": [backend.pid],
            "worker": [p.pid for p in workers],
            **server_groups(rabbit, redis),
        }
        cpu_rows = []
        results: Results = {}
        for c in args.concurrency:
            floors, paths, protos = [], [], []
            used = dict.fromkeys(groups, 0.0)
            for _ in range(args.rounds):  # interleaved, so a slow minute hits every side
                floors.append(wrk(floor_port, c, args.duration))
                before = cpu_by_group(groups) if args.cpu else {}
                paths.append(wrk(full_port, c, args.duration))
                if args.cpu:
                    after = cpu_by_group(groups)
                    for g in groups:
                        used[g] += after[g] - before[g]
                if args.prototype:
                    protos.append(wrk(proto_port, c, args.duration))
            floor, path = median_run(floors), median_run(paths)
            results[c] = (floor, path, median_run(protos) if protos else None)
            if args.cpu:
                cpu_rows.append((c, {g: used[g] * 1000 / path["n"] for g in groups}))
            flag = "" if path["bad"] == 0 and floor["bad"] == 0 else "  <- BAD ANSWERS"
            print(
                f"{c:>4} {floor['rps']:>12.0f} {path['rps']:>11.0f} "
                f"{path['rps'] / floor['rps']:>6.2f} "
                f"{floor['p50_ms']:>8.2f}ms {path['p50_ms']:>7.2f}ms {path['p99_ms']:>7.2f}ms "
                f"{path['bad']:>4}{flag}",
                flush=True,
            )
        if args.prototype:
            print_prototype(results)
        if args.cpu:
            print("# CPU ms per answered request, by process (wrk itself not counted)")
            print(f"{'c':>4} " + " ".join(f"{g:>9}" for g in groups) + f" {'total':>9}")
            for c, row in cpu_rows:
                cells = " ".join(f"{v:>9.3f}" for v in row.values())
                print(f"{c:>4} {cells} {sum(row.values()):>9.3f}")
        print_verdict(results, hops_ms(rabbit, redis) if 1 in results else None)
    finally:
        stop_all(procs, rabbit, redis)
    return 0


if __name__ == "__main__":
    sys.exit(main())
