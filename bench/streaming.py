"""Streamed chats beside the non-streaming path, same stack and run: time to first token at c=1,
requests/s at c=64, and their ratios to `/chat_completion`'s.

    python bench/streaming.py [--duration 6] [--rounds 3] [--requests 300] [--cpu]

Starts private Redis and RabbitMQ, one echo worker at zero delay and one backend (as
`bench/core_path.py` does), plus the HTTP-only floor app. Every request is a 32-word user message
answered with 32 tokens (`tokens_limit` / `max_tokens` 32). Three sides:

- `chat_completion`: `POST /chat_completion`, the original non-streaming endpoint (the reference);
- `v1`: `POST /v1/chat/completions` without `stream` (the OpenAI endpoint, answer in one body);
- `v1 stream`: the same with `"stream": true`, server-sent events relayed from the job's Redis
  Stream (the worker coalesces: at most one append in flight per job).

c=1: one Python client (httpx, one kept-alive connection) sends `--requests` requests per side
per round; a non-streamed request's time is to its full answer, a streamed one's TTFT to the first
SSE chunk whose delta has text, and its total to `data: [DONE]`. The floor app's `/generate`
with the same client is the client + HTTP share of those times. c=64: wrk (`bench/chat.lua`) for
`--duration` seconds per side. Each round runs every side in turn (the order reversed every other
round, so slow spells hit all), after a warm-up; c=1 p50s are over all rounds' requests, c=64
figures medians over rounds. Every answer is checked (200, the message's own words, all 32; a
stream must end with `data: [DONE]`). `--cpu` adds the CPU each process spent per request and
the Redis commands per request, by side. Last, the two targets are printed met or missed:
streamed TTFT p50 at c=1 <= 1.5 x `/chat_completion`'s p50, streamed req/s at c=64 >= 0.5 x
`/chat_completion`'s. Needs `wrk` (apt-get install wrk).
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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.core_path import (  # noqa: E402
    cpu_by_group,
    echo_worker,
    median_run,
    server_groups,
    start_servers,
    stop_all,
    uvicorn,
    wrk,
)
from tools.local.servers import free_port  # noqa: E402

LUA = ROOT / "bench" / "chat.lua"
MODEL = "bench"  # the echo worker's model name: its queue's (chat.lua sends the same)
TOKENS = 32
SIDES = ("chat_completion", "v1", "v1 stream")
WRK_MODE = {"chat_completion": "plain", "v1": "v1", "v1 stream": "stream"}
FLOOR = "HTTP floor"
TARGET_TTFT = 1.5  # streamed TTFT p50 at c=1, at most this x /chat_completion's p50
TARGET_RPS = 0.5  # streamed req/s at c=64, at least this x /chat_completion's
C_HIGH = 64


def message(n: int) -> str:
    """A distinct 32-word message (the echo model answers with it, 32 tokens)."""
    return f"req {n} sum {n * 7919}" + " word" * (TOKENS - 4)


@dataclass
class Samples:
    """One side's c=1 requests: seconds to the full answer, to the first text (streams), and
    text chunks per streamed answer."""

    total: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    bad: int = 0

    def p50_ms(self, xs: list[float]) -> float:
        return statistics.median(xs) * 1000


def ask(client: httpx.Client, side: str, n: int, into: Samples) -> None:
    """One request; its times go `into` the side's samples, a wrong answer counts as bad."""
    text = message(n)
    messages = [{"role": "user", "content": text}]
    if side == FLOOR:
        path, body = "/generate", {"content": text}
    elif side == "chat_completion":
        path, body = "/chat_completion", {"messages": messages, "meta": {"tokens_limit": TOKENS}}
    else:
        path = "/v1/chat/completions"
        body = {"model": MODEL, "max_tokens": TOKENS, "messages": messages}
        if side == "v1 stream":
            body["stream"] = True
    request = client.build_request("POST", path, content=orjson.dumps(body))
    if side != "v1 stream":
        started = time.perf_counter()
        r = client.send(request)
        into.total.append(time.perf_counter() - started)
        answer = r.json() if r.status_code == 200 else {}
        got = answer["choices"][0]["message"]["content"] if side == "v1" else answer.get("content")
        into.bad += got != text
        return
    parts: list[str] = []
    first, done, buf = None, False, b""
    started = time.perf_counter()
    r = client.send(request, stream=True)
    try:
        for data in r.iter_raw():
            *events, buf = (buf + data).split(b"\n\n")
            for event in events:
                payload = event.removeprefix(b"data: ")
                if payload == b"[DONE]":
                    done = True
                    continue
                choices = orjson.loads(payload).get("choices") or [{}]
                if piece := choices[0].get("delta", {}).get("content"):
                    if first is None:
                        first = time.perf_counter() - started
                    parts.append(piece)
    finally:
        r.close()
    into.total.append(time.perf_counter() - started)
    if first is not None:
        into.ttft.append(first)
    into.chunks.append(len(parts))
    into.bad += r.status_code != 200 or not done or "".join(parts) != text


Run = dict[str, float]  # one wrk figure set (core_path's wrk / median_run)
Key = tuple[str, int]  # (side, concurrency)


class Meter:
    """CPU seconds by process and Redis calls by command, summed per side and concurrency over
    its runs (`--cpu`); the c=1 client (this process) and wrk are not counted."""

    def __init__(self, groups: dict[str, list[int]], store: redis.Redis) -> None:
        self.groups, self.store = groups, store
        self.used: dict[Key, Counter[str]] = {}
        self.requests: Counter[Key] = Counter()

    def snapshot(self) -> Counter[str]:
        stats = self.store.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        calls.pop("info", None)
        return Counter(cpu_by_group(self.groups)) + Counter(
            {f"redis {k}": v for k, v in calls.items()}
        )

    def add(self, key: Key, before: Counter[str], requests: float) -> None:
        self.used.setdefault(key, Counter()).update(self.snapshot() - before)
        self.requests[key] += int(requests)

    def per_request(self, key: Key) -> dict[str, float]:
        return {k: v / self.requests[key] for k, v in self.used[key].items()}


def run_rounds(
    args: argparse.Namespace, port: int, floor_port: int, meter: Meter | None
) -> tuple[dict[str, Samples], dict[str, Run]]:
    """Every side at c=1 (this process's client), then at c=64 (wrk), round after round."""
    low = {side: Samples() for side in (FLOOR, *SIDES)}
    high: dict[str, list[Run]] = {side: [] for side in SIDES}
    headers = {"Content-Type": "application/json"}
    backend = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)
    floor = httpx.Client(base_url=f"http://127.0.0.1:{floor_port}", headers=headers, timeout=30)
    n = 0
    with backend, floor:
        for side in low:  # warm-up: connections, first jobs, the stream's code paths
            for _ in range(50):
                n += 1
                ask(floor if side == FLOOR else backend, side, n, Samples())
        for r in range(args.rounds):
            order = list(low) if r % 2 == 0 else list(reversed(low))
            for side in order:
                before = meter.snapshot() if meter else Counter()
                for _ in range(args.requests):
                    n += 1
                    ask(floor if side == FLOOR else backend, side, n, low[side])
                if meter and side != FLOOR:
                    meter.add((side, 1), before, args.requests)
            for side in (s for s in order if s != FLOOR):
                before = meter.snapshot() if meter else Counter()
                high[side].append(wrk(port, C_HIGH, args.duration, LUA, (WRK_MODE[side],)))
                if meter:
                    meter.add((side, C_HIGH), before, high[side][-1]["n"])
            done = "  ".join(f"{s} {high[s][-1]['rps']:.0f}" for s in SIDES)
            print(f"# round {r + 1}: c={C_HIGH} req/s {done}", flush=True)
    return low, {side: median_run(runs) for side, runs in high.items()}


def print_results(
    args: argparse.Namespace, low: dict[str, Samples], high: dict[str, Run], meter: Meter | None
) -> None:
    ref_low, ref_high = low["chat_completion"], high["chat_completion"]
    ref_p50 = ref_low.p50_ms(ref_low.total)
    print(
        f"# 32-word chat, {TOKENS} tokens out, echo worker at zero delay; 1 backend, 1 worker; "
        f"c=1: httpx (keep-alive), {args.requests} requests per side and round; "
        f"c={C_HIGH}: wrk, {args.duration:g} s per side and round; {args.rounds} round(s), "
        f"interleaved; {os.cpu_count()} cores"
    )
    print(
        f"{'side':<16} {'c':>3} {'req/s':>7} {'p50':>9} {'p99':>9} {'TTFT p50':>9} "
        f"{'p50 x ref':>9} {'TTFT x ref':>10} {'req/s x ref':>11} {'bad':>4}"
    )
    for side, s in low.items():
        p50, p99 = s.p50_ms(s.total), sorted(s.total)[int(0.99 * len(s.total))] * 1000
        ttft = f"{s.p50_ms(s.ttft):>7.2f}ms" if s.ttft else f"{'-':>9}"
        ttft_x = f"{s.p50_ms(s.ttft) / ref_p50:>10.2f}" if s.ttft else f"{'-':>10}"
        print(
            f"{side:<16} {1:>3} {len(s.total) / sum(s.total):>7.0f} {p50:>7.2f}ms {p99:>7.2f}ms "
            f"{ttft} {p50 / ref_p50:>9.2f} {ttft_x} {'-':>11} {s.bad:>4}"
        )
    for side, run in high.items():
        print(
            f"{side:<16} {C_HIGH:>3} {run['rps']:>7.0f} {run['p50_ms']:>7.2f}ms "
            f"{run['p99_ms']:>7.2f}ms {'-':>9} {run['p50_ms'] / ref_high['p50_ms']:>9.2f} "
            f"{'-':>10} {run['rps'] / ref_high['rps']:>11.2f} {run['bad']:>4}"
        )
    streamed = low["v1 stream"]
    if streamed.chunks:
        print(
            f"# a streamed {TOKENS}-token answer came in {statistics.median(streamed.chunks):g} "
            f"text chunk(s) at c=1 (median; {min(streamed.chunks)}-{max(streamed.chunks)}): "
            f"the worker's pieces coalesced"
        )
    if meter:
        print_cpu(meter)
    ttft = streamed.p50_ms(streamed.ttft) if streamed.ttft else float("inf")
    ttft_ratio = ttft / ref_p50
    rps, ref_rps = high["v1 stream"]["rps"], ref_high["rps"]
    print(
        f"# target: streamed TTFT p50 at c=1 <= {TARGET_TTFT:g} x /chat_completion's p50; "
        f"streamed req/s at c={C_HIGH} >= {TARGET_RPS:g} x /chat_completion's"
    )
    print(
        f"#   c=1: TTFT p50 {ttft:.2f} ms / {ref_p50:.2f} ms = {ttft_ratio:.2f}: "
        f"{'met' if ttft_ratio <= TARGET_TTFT else 'missed'}"
    )
    print(
        f"#   c={C_HIGH}: {rps:.0f} / {ref_rps:.0f} req/s = {rps / ref_rps:.2f}: "
        f"{'met' if rps / ref_rps >= TARGET_RPS else 'missed'}",
        flush=True,
    )


def print_cpu(meter: Meter) -> None:
    groups = list(meter.groups)
    print("# CPU ms per answered request, by process; Redis commands per request")
    print(
        f"{'side':<16} {'c':>3} " + " ".join(f"{g:>9}" for g in groups) + f" {'total':>9} "
        f"{'redis cmds':>10}"
    )
    for (side, c), _ in sorted(meter.used.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        row = meter.per_request((side, c))
        cpu = [row.get(g, 0.0) * 1000 for g in groups]
        cmds = sum(v for k, v in row.items() if k.startswith("redis "))
        print(
            f"{side:<16} {c:>3} " + " ".join(f"{v:>9.3f}" for v in cpu) + f" {sum(cpu):>9.3f} "
            f"{cmds:>10.2f}"
        )
    for side in SIDES:
        row = meter.per_request((side, C_HIGH))
        cmds = sorted(((k[6:], v) for k, v in row.items() if k.startswith("redis ")), key=_neg)
        listed = ", ".join(f"{k} {v:.2f}" for k, v in cmds if v >= 0.01)
        print(f"# Redis commands per request, {side}, c={C_HIGH}: {listed}")


def _neg(item: tuple[str, float]) -> float:
    return -item[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6, help="seconds per wrk run at c=64")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians printed")
    ap.add_argument("--requests", type=int, default=300, help="c=1 requests per side and round")
    ap.add_argument("--cpu", action="store_true", help="CPU ms and Redis commands per request")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="llmwrap-stream-"))
    redis_server, rabbit, env = start_servers(
        tmp,
        QUEUE_NAME=MODEL,
        REDIS_PREFIX="bench",
        WORKER_CONCURRENCY="128",
        ECHO_TOKEN_DELAY_MS="0",
        PYTHONPATH=str(ROOT),
        HEARTBEAT_FILE=str(tmp / "worker.alive"),
    )
    procs: list[subprocess.Popen[bytes]] = []  # stopped in reverse: HTTP sides before the worker
    try:
        worker = echo_worker(env, tmp / "worker.log")
        procs.append(worker)
        floor_port, port = free_port(), free_port()
        procs.append(uvicorn("bench.floor_app:app", floor_port, 1, env, tmp / "floor.log"))
        backend = uvicorn("services.backend.main:app", port, 1, env, tmp / "backend.log")
        procs.append(backend)
        groups = {"backend": [backend.pid], "worker": [worker.pid]}
        groups |= server_groups(rabbit, redis_server)
        store = redis.Redis(port=redis_server.port)
        meter = Meter(groups, store) if args.cpu else None
        low, high = run_rounds(args, port, floor_port, meter)
        print_results(args, low, high, meter)
        store.close()
    finally:
        stop_all(procs, rabbit, redis_server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
