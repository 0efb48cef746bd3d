"""Soak: minutes of a steady open-loop load of mixed requests, every answer checked, and whether
memory, Redis and the queue stay flat.

    python bench/soak.py [--duration 600] [--rate 50] [--sample 10] [--warmup S]
                         [--token-delay-ms 5] [--result-ttl 60] [--job-timeout 30]

Starts private Redis and RabbitMQ, one echo worker (ECHO_TOKEN_DELAY_MS per token, 32-token
messages) and one backend with `bench/core_path.py`'s helpers, then sends `--rate` requests a
second on a fixed schedule (open loop: a slow answer does not slow the sender) for `--duration`
seconds, cycling through POST /generate, /chat_completion, /v1/chat/completions (plain and
streamed, read to `data: [DONE]`) and /v1/jobs (polled to the end, or cancelled with DELETE).
Each answer must be the request's own text; anything else is an error, counted by kind.

Every `--sample` seconds it prints the RSS of the backend and the worker (VmRSS), Redis's DBSIZE
and used_memory, the model queue's and its dead-letter queue's depth (passive declare) and the
backend's `llm_wrap_jobs_waiting`. Finished jobs live RESULT_TTL in Redis, so the soak sets it
short (60 s): after a warm-up of RESULT_TTL + 30 s keys expire as fast as they come, and a key
count that still grows is a leak. "Flat": the last sample at most max(1.2 x, + a slack) the first
sample after warm-up (slack: RSS 20 MiB, Redis memory 5 MiB, keys 100, queue depths and jobs
waiting 25). Exits 1 on any error or a metric that is not flat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import orjson
import uvloop
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.core_path import (  # noqa: E402
    cpu_by_group,
    echo_worker,
    server_groups,
    start_servers,
    stop_all,
    uvicorn,
)
from tools.local.servers import free_port  # noqa: E402

MODEL = "soak"  # the worker's model name and queue
TOKENS = 32
# One cycle of ten requests: the original endpoints, OpenAI's (plain and streamed), async jobs.
PLAIN = ("generate", "chat_completion", "v1", "v1 stream")
MIX = (*PLAIN, "job", *PLAIN, "job cancel")
POLL_S = 0.05
# Requests in flight (each on a connection of its own), at most; the others wait their turn in
# the client. httpcore scans its pool for every request it has queued whenever a request starts
# or ends: in two first 10-minute runs on the busy 2-core machine a stall of the client let
# thousands queue there (pools of 1,024, then 128 connections), the scans took the client's CPU
# and it fell a minute behind while the backend idled. Waiting on a semaphore costs nothing.
POOL = 128
JSON = {"Content-Type": "application/json"}
# When a cancel is sent after its job's submission: while queued or running, or (0.4 s) after a
# 32-token job at 5 ms/token finished, which DELETE answers with 409.
CANCEL_AFTER_S = (0.0, 0.05, 0.1, 0.4)
MiB = 1024 * 1024


def message(n: int) -> str:
    """A distinct 32-word message: the echo model answers with exactly this text."""
    return f"soak {n} check {n * 7919 % 100003}" + " word" * (TOKENS - 4)


class Wrong(Exception):
    """An answer that came back but is not the request's own: its kind of error."""


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    cancels: Counter[str] = field(default_factory=Counter)  # cancelled, or finished first
    sent: Counter[str] = field(default_factory=Counter)
    lag: float = 0.0  # how late the sender started a request, at worst (s)
    gated: int = 0  # requests that waited for one of the POOL slots


async def ask_plain(client: httpx.AsyncClient, kind: str, text: str) -> None:
    messages = [{"role": "user", "content": text}]
    body: dict[str, object]
    if kind == "generate":
        path, body = "/generate", {"content": text}
    elif kind == "chat_completion":
        path, body = "/chat_completion", {"messages": messages, "meta": {"tokens_limit": TOKENS}}
    else:
        path = "/v1/chat/completions"
        body = {"model": MODEL, "max_tokens": TOKENS, "messages": messages}
    r = await client.post(path, content=orjson.dumps(body))
    if r.status_code != 200:
        raise Wrong(f"HTTP {r.status_code}")
    answer = r.json()
    got = answer["choices"][0]["message"]["content"] if kind == "v1" else answer.get("content")
    if got != text:
        raise Wrong("wrong answer")


async def ask_stream(client: httpx.AsyncClient, text: str) -> None:
    messages = [{"role": "user", "content": text}]
    body = {"model": MODEL, "max_tokens": TOKENS, "stream": True, "messages": messages}
    parts: list[str] = []
    done, buf = False, b""
    async with client.stream("POST", "/v1/chat/completions", content=orjson.dumps(body)) as r:
        if r.status_code != 200:
            raise Wrong(f"HTTP {r.status_code}")
        async for data in r.aiter_raw():
            *events, buf = (buf + data).split(b"\n\n")
            for event in events:
                payload = event.removeprefix(b"data: ")
                if payload == b"[DONE]":
                    done = True
                    continue
                chunk = orjson.loads(payload)
                if "error" in chunk:
                    raise Wrong(f"in-band error {chunk['error'].get('code')}")
                choices = chunk.get("choices") or [{}]
                parts.append(choices[0].get("delta", {}).get("content") or "")
    if not done:
        raise Wrong("no [DONE]")
    if "".join(parts) != text:
        raise Wrong("wrong answer")


async def job_view(client: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    r = await client.get(f"/v1/jobs/{job_id}")
    if r.status_code != 200:
        raise Wrong(f"GET HTTP {r.status_code}")
    view: dict[str, object] = r.json()
    return view


def job_text(view: dict[str, object]) -> object:
    result = view.get("result")
    return result["choices"][0]["message"]["content"] if isinstance(result, dict) else None


async def ask_job(
    client: httpx.AsyncClient, text: str, n: int, cancel: bool, tally: Tally, deadline_s: float
) -> None:
    """Submit, then poll to the end; or cancel it (CANCEL_AFTER_S) and check what it became."""
    body = {"model": MODEL, "max_tokens": TOKENS, "messages": [{"role": "user", "content": text}]}
    r = await client.post("/v1/jobs", content=orjson.dumps(body))
    if r.status_code != 202:
        raise Wrong(f"POST HTTP {r.status_code}")
    job_id = r.json()["id"]
    if cancel:
        await asyncio.sleep(CANCEL_AFTER_S[n // len(MIX) % len(CANCEL_AFTER_S)])
        r = await client.delete(f"/v1/jobs/{job_id}")
        if r.status_code == 200 and r.json()["status"] == "cancelled":
            tally.cancels["cancelled"] += 1
            if (await job_view(client, job_id))["status"] != "cancelled":
                raise Wrong("cancelled, then not")
            return
        if r.status_code != 409 or r.json()["error"]["code"] != "job_finished":
            raise Wrong(f"DELETE HTTP {r.status_code}")
        tally.cancels["finished first"] += 1
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        view = await job_view(client, job_id)
        if view["status"] == "completed":
            if job_text(view) != text:
                raise Wrong("wrong answer")
            return
        if view["status"] not in ("pending", "in_progress"):
            raise Wrong(f"ended {view['status']}")
        await asyncio.sleep(POLL_S)
    raise Wrong("never finished")


async def one(
    client: httpx.AsyncClient,
    n: int,
    tally: Tally,
    deadline_s: float,
    loop_time: Callable[[], float],
    gate: asyncio.Semaphore,
) -> None:
    """One request of the mix, timed from when it was due (waiting for a slot included)."""
    kind = MIX[n % len(MIX)]
    tally.sent[kind] += 1
    text = message(n)
    started = loop_time()
    tally.gated += gate.locked()
    try:
        async with gate:
            await ask(client, kind, text, n, tally, deadline_s)
    except Wrong as e:
        tally.errors[f"{kind}: {e}"] += 1
        return
    except Exception as e:  # transport errors, timeouts, unparsable bodies
        tally.errors[f"{kind}: {type(e).__name__}"] += 1
        return
    tally.latencies.setdefault(kind, []).append(loop_time() - started)


async def ask(
    client: httpx.AsyncClient, kind: str, text: str, n: int, tally: Tally, deadline_s: float
) -> None:
    if kind == "v1 stream":
        await ask_stream(client, text)
    elif kind.startswith("job"):
        await ask_job(client, text, n, kind == "job cancel", tally, deadline_s)
    else:
        await ask_plain(client, kind, text)


def rss_mib(pid: int) -> float:
    """The process's resident memory (VmRSS, /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# Sampled figures: name (its column's width), format, flatness slack (in the figure's unit).
METRICS = (
    ("backend RSS MiB", "{:.1f}", 20.0),
    ("worker RSS MiB", "{:.1f}", 20.0),
    ("redis keys", "{:.0f}", 100.0),
    ("redis mem MiB", "{:.2f}", 5.0),
    ("queue", "{:.0f}", 25.0),
    ("dead letters", "{:.0f}", 25.0),
    ("jobs waiting", "{:.0f}", 25.0),
)


@dataclass
class Probe:
    """What a sample reads: the processes, Redis, the broker and the backend's /metrics."""

    backend_pid: int
    worker_pid: int
    redis: Redis
    channel: aio_pika.abc.AbstractChannel
    client: httpx.AsyncClient

    async def depth(self, queue: str) -> int:
        declared = await self.channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0)

    async def sample(self) -> dict[str, float]:
        info = await self.redis.info("memory")
        r = await self.client.get("/metrics")
        r.raise_for_status()
        waiting = next(
            float(line.split()[1])
            for line in r.text.splitlines()
            if line.startswith("llm_wrap_jobs_waiting ")
        )
        return dict(
            zip(
                (m[0] for m in METRICS),
                (
                    rss_mib(self.backend_pid),
                    rss_mib(self.worker_pid),
                    float(await self.redis.dbsize()),
                    info["used_memory"] / MiB,
                    float(await self.depth(MODEL)),
                    float(await self.depth(MODEL + ".dead")),
                    waiting,
                ),
                strict=True,
            )
        )


def row(label: str, values: dict[str, float], extra: str = "") -> str:
    cells = " ".join(f"{fmt.format(values[name]):>{len(name)}}" for name, fmt, _ in METRICS)
    return f"{label:>8} {cells}{extra}"


Samples = list[tuple[float, dict[str, float]]]  # (seconds into the load, figures)


@dataclass
class Run:
    tally: Tally
    samples: Samples
    drained: dict[str, float] | None  # once the last answers came in
    load_s: float
    unanswered: int  # requests still open when the drain gave up
    cpu: dict[str, float]  # % of one core over the load, by process


async def soak(
    args: argparse.Namespace, port: int, ports: tuple[int, int], groups: dict[str, list[int]]
) -> Run:
    """The open-loop load, with a sample every `args.sample` seconds beside it."""
    rabbit_port, redis_port = ports
    deadline_s = args.job_timeout + 10
    base_url = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    tally, samples = Tally(), []
    tasks: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(POOL)
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(
            base_url=base_url, timeout=deadline_s, limits=limits, headers=JSON
        ) as client,
        httpx.AsyncClient(base_url=base_url, timeout=10) as side,
        await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{rabbit_port}/") as broker,
    ):
        redis = Redis(port=redis_port)
        probe = Probe(
            groups["backend"][0], groups["worker"][0], redis, await broker.channel(), side
        )

        async def take(label: str) -> dict[str, float] | None:
            try:
                values = await probe.sample()
            except Exception as e:  # a sample that fails is an error of the run, not a crash
                tally.errors[f"sample: {type(e).__name__}"] += 1
                return None
            print(row(label, values, f" {len(tasks):>9}"), flush=True)
            return values

        async def sampler() -> None:
            k = 1
            while k * args.sample < args.duration:
                await asyncio.sleep(start + k * args.sample - loop.time())
                if (values := await take(f"{k * args.sample:g} s")) is not None:
                    samples.append((k * args.sample, values))
                k += 1

        print(f"{'':>8} " + " ".join(name for name, _, _ in METRICS) + " in flight", flush=True)
        if (values := await take("0 s")) is not None:
            samples.append((0.0, values))
        cpu_before, own_before = cpu_by_group(groups), time.process_time()
        start = loop.time()
        sampling = asyncio.create_task(sampler())
        n = 0
        while (due := n / args.rate) < args.duration:
            late = loop.time() - start - due
            if late < 0:
                await asyncio.sleep(-late)
                continue
            tally.lag = max(tally.lag, late)
            task = asyncio.create_task(one(client, n, tally, deadline_s, loop.time, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(start + args.duration - loop.time())
        sampling.cancel()
        load_s = loop.time() - start
        cpu_after, own_after = cpu_by_group(groups), time.process_time()
        if (values := await take(f"{load_s:.0f} s")) is not None:
            samples.append((load_s, values))
        if tasks:
            await asyncio.wait(set(tasks), timeout=deadline_s + 5)
        unanswered = len(tasks)
        drained = await take("drained")
        await redis.aclose()
    cpu = {g: (cpu_after[g] - cpu_before[g]) * 100 / load_s for g in groups}
    cpu["soak client"] = (own_after - own_before) * 100 / load_s
    return Run(tally, samples, drained, load_s, unanswered, cpu)


def flat_limit(base: float, slack: float) -> float:
    return max(base * 1.2, base + slack)


def report(run: Run, warmup: float) -> bool:
    """The figures, the requests by kind and the errors; True when the soak passed."""
    after = [(t, v) for t, v in run.samples if t >= warmup]
    flat = True
    if len(after) < 2 or run.samples[0][0] != 0:
        print("# too few samples after the warm-up to judge flatness", flush=True)
        flat = False
    else:
        (_, start), (t_warm, warm), (t_end, end) = run.samples[0], after[0], after[-1]
        print(
            f"# start: before the load; warm-up: t={t_warm:g} s; end: t={t_end:.0f} s; "
            "flat: end <= limit = max(1.2 x warm-up, warm-up + slack)"
        )
        print(f"{'':<16} {'start':>9} {'warm-up':>9} {'end':>9} {'max':>9} {'limit':>9} flat")
        for name, fmt, slack in METRICS:
            top = max(v[name] for _, v in run.samples)
            limit = flat_limit(warm[name], slack)
            ok = end[name] <= limit
            flat &= ok
            cells = " ".join(f"{fmt.format(x):>9}" for x in (start[name], warm[name], end[name]))
            print(
                f"{name:<16} {cells} {fmt.format(top):>9} {fmt.format(limit):>9} "
                f"{'yes' if ok else 'NO'}"
            )
    tally = run.tally
    print(f"{'kind':<16} {'sent':>7} {'ok':>7} {'errors':>7} {'p50':>9} {'p99':>9}")
    every: list[float] = []
    for kind in dict.fromkeys(MIX):
        times = sorted(tally.latencies.get(kind, []))
        every += times
        bad = sum(c for k, c in tally.errors.items() if k.startswith(f"{kind}:"))
        print(f"{kind:<16} {tally.sent[kind]:>7} {len(times):>7} {bad:>7} {percentiles(times)}")
    errors = sum(tally.errors.values()) + run.unanswered
    sent = sum(tally.sent.values())
    print(f"{'all':<16} {sent:>7} {len(every):>7} {errors:>7} {percentiles(sorted(every))}")
    print(
        f"# achieved: {sent / run.load_s:.1f} req/s sent ({sent} in {run.load_s:.1f} s), "
        f"{len(every) / run.load_s:.1f} req/s answered right; the sender was at most "
        f"{tally.lag * 1000:.0f} ms late; {tally.gated} waited for one of the client's {POOL} "
        f"slots; {run.unanswered} unanswered at the end"
    )
    print(
        f"# cancels: {tally.cancels['cancelled']} cancelled, "
        f"{tally.cancels['finished first']} finished first (409)"
    )
    print(
        "# CPU, % of one core over the load: "
        + ", ".join(f"{g} {v:.0f}" for g, v in run.cpu.items())
    )
    if errors:
        print("# errors by kind:")
        for kind, count in sorted(tally.errors.items()):
            print(f"#   {kind}: {count}")
        if run.unanswered:
            print(f"#   unanswered at the end: {run.unanswered}")
    else:
        print("# errors: 0")
    passed = errors == 0 and flat
    print(
        f"# verdict: {'PASS' if passed else 'FAIL'} ({errors} errors, "
        f"{'every figure flat' if flat else 'not flat'})",
        flush=True,
    )
    return passed


def percentiles(times: list[float]) -> str:
    if not times:
        return f"{'-':>9} {'-':>9}"
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"{statistics.median(times) * 1000:>7.1f}ms {p99 * 1000:>7.1f}ms"


def log_problems(log: Path) -> int:
    """Lines of a service's log that say ERROR, start a traceback or report an exception
    nobody retrieved (asyncio logs those whatever the log format)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(
        "ERROR" in line or line.startswith("Traceback") or "never retrieved" in line
        for line in text.splitlines()
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600, help="seconds of load")
    ap.add_argument("--rate", type=float, default=50, help="requests per second (open loop)")
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples")
    ap.add_argument(
        "--warmup",
        type=float,
        help="seconds before the sample flatness is judged from "
        "(default: RESULT_TTL + 30, at most half the duration)",
    )
    ap.add_argument("--token-delay-ms", type=float, default=5, help="ECHO_TOKEN_DELAY_MS")
    ap.add_argument("--result-ttl", type=int, default=60, help="RESULT_TTL (s) of the soak")
    ap.add_argument("--job-timeout", type=float, default=30, help="the backend's JOB_TIMEOUT (s)")
    args = ap.parse_args()
    warmup = (
        args.warmup if args.warmup is not None else min(args.result_ttl + 30, args.duration / 2)
    )

    tmp = Path(tempfile.mkdtemp(prefix="llmwrap-soak-"))
    redis_server, rabbit, env = start_servers(
        tmp,
        QUEUE_NAME=MODEL,
        REDIS_PREFIX="soak",
        WORKER_CONCURRENCY="128",
        ECHO_TOKEN_DELAY_MS=f"{args.token_delay_ms:g}",
        RESULT_TTL=str(args.result_ttl),
        JOB_TIMEOUT=f"{args.job_timeout:g}",
        PYTHONPATH=str(ROOT),
        HEARTBEAT_FILE=str(tmp / "worker.alive"),
    )
    procs: list[subprocess.Popen[bytes]] = []  # stopped in reverse: the backend before the worker
    try:
        worker = echo_worker(env, tmp / "worker.log")
        procs.append(worker)
        port = free_port()
        backend = uvicorn("services.backend.main:app", port, 1, env, tmp / "backend.log")
        procs.append(backend)
        print(
            f"# soak: {args.duration:g} s at {args.rate:g} req/s (open loop), mix "
            + ", ".join(f"{k} {c * 100 // len(MIX)} %" for k, c in Counter(MIX).items())
            + f"; echo {TOKENS} tokens at {args.token_delay_ms:g} ms/token; "
            f"RESULT_TTL {args.result_ttl} s, JOB_TIMEOUT {args.job_timeout:g} s; "
            f"sample every {args.sample:g} s, warm-up {warmup:g} s; {os.cpu_count()} cores",
            flush=True,
        )
        groups = {"backend": [backend.pid], "worker": [worker.pid]}
        groups |= server_groups(rabbit, redis_server)
        run = uvloop.run(soak(args, port, (rabbit.port, redis_server.port), groups))
        passed = report(run, warmup)
    finally:
        stop_all(procs, rabbit, redis_server)
    print(
        f"# log lines with ERROR or a traceback: backend {log_problems(tmp / 'backend.log')}, "
        f"worker {log_problems(tmp / 'worker.log')} (logs in {tmp})"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
