"""vLLM through this stack beside vLLM on its own: the same engine, model, prompts and max tokens
driven three ways in one run.

    python bench/vllm_path.py [--concurrency 1 8 64] [--rounds 2] [--prompt-tokens 64]
                              [--max-tokens 32] [--requests 32 128 480] [--model DIR]
                              [--max-model-len 512] [--engine-args JSON] [--cpu]

(a) this stack: HTTP -> backend -> RabbitMQ -> vLLM worker -> Redis -> backend -> HTTP
    (`POST /generate`, one backend process, one worker);
(b) vLLM's own OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`,
    `POST /v1/completions`) with the same engine arguments;
(c) the engine called in-process (`bench/vllm_engine.py`: AsyncLLM, no HTTP at all).
All three are started once and stay up; each round runs every concurrency on (a), (b), (c) in
turn, closed-loop (each client sends its next prompt when its answer is back), and medians over
the rounds are printed: output tokens/s, requests/s, request p50/p99, then a/b and a/c. The last
lines say whether the targets are met (a/b >= 0.95 in tokens/s at the highest concurrency;
p50 of (a) at most 10 % over (b) at concurrency 1). `--cpu` adds the CPU time each process
(with its children: the engine core under the worker and the server) spent per request of each
way, the load generator (this process) included, to see where a way's time goes on a small host.

Greedy sampling; output tokens are counted by each side (the job records' completion_tokens for
(a), the server's usage for (b), the engine's outputs for (c)). Without --model, the tiny
random-weight Llama is built in a temporary directory. Runs the engine from .venv-vllm
(`bash tools/setup/vllm.sh`; on a host without a GPU it is vLLM's CPU build, with CPU_ENV).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.core_path import (  # noqa: E402
    cpu_by_group,
    server_groups,
    start_servers,
    stop_all,
    uvicorn,
)
from tools.local import vllm_cpu  # noqa: E402
from tools.local.servers import free_port  # noqa: E402

WAYS = ("a", "b", "c")
NAMES = {"a": "this stack", "b": "vLLM server", "c": "engine in-process"}
WORDS = (
    "the a model queue worker answer token request broker redis rabbit gpu fleet serve fast "
    "what is ai artificial intelligence hello world one two three four five six seven"
).split()


@dataclass
class Run:
    wall: float
    latencies: list[float]
    tokens: int
    bad: int = 0

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall

    @property
    def req_s(self) -> float:
        return len(self.latencies) / self.wall

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def make_prompts(model: Path, n: int, tokens: int) -> list[str]:
    """`n` random word prompts cut to `tokens` tokens of the model's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    rng = random.Random(0)
    prompts = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(tokens * 2))
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        prompts.append(text[: enc["offset_mapping"][tokens - 1][1]])
    return prompts


async def closed_loop(
    concurrency: int, prompts: list[str], send: Any
) -> tuple[float, list[float], list[Any]]:
    """Send every prompt, `concurrency` at a time; the wall time, latencies and answers."""
    latencies: list[float] = []
    answers: list[Any] = []
    queue = list(reversed(prompts))

    async def client() -> None:
        while queue:
            prompt = queue.pop()
            started = time.perf_counter()
            answers.append(await send(prompt))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, answers


async def run_stack(
    url: str, store: redis.Redis, prefix: str, c: int, prompts: list[str], max_tokens: int
) -> Run:
    tag = uuid.uuid4().hex[:8]
    limits = httpx.Limits(max_connections=c + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def send(prompt: str) -> int:
            body = {
                "job_id": f"{tag}-{uuid.uuid4().hex}",
                "content": prompt,
                "meta": {"temperature": 0, "tokens_limit": max_tokens},
            }
            return (await client.post("/generate", json=body)).status_code

        wall, latencies, codes = await closed_loop(c, prompts, send)
    tokens = 0
    for key in store.scan_iter(f"{prefix}:job:*", count=1000):
        client_id, completion = store.hmget(key, "client_job_id", "completion_tokens")
        if client_id and client_id.decode().startswith(tag) and completion:
            tokens += int(completion)
            store.delete(key)
    return Run(wall, latencies, tokens, bad=sum(code != 200 for code in codes))


async def run_server(url: str, model: str, c: int, prompts: list[str], max_tokens: int) -> Run:
    limits = httpx.Limits(max_connections=c + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def send(prompt: str) -> int | None:
            body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
            r = await client.post("/v1/completions", json=body)
            return int(r.json()["usage"]["completion_tokens"]) if r.status_code == 200 else None

        wall, latencies, counts = await closed_loop(c, prompts, send)
    return Run(wall, latencies, sum(n or 0 for n in counts), bad=counts.count(None))


def run_engine(engine: subprocess.Popen[str], c: int, prompts: list[str], max_tokens: int) -> Run:
    assert engine.stdin is not None
    cmd = {"concurrency": c, "prompts": prompts, "max_tokens": max_tokens}
    engine.stdin.write(json.dumps(cmd) + "\n")
    engine.stdin.flush()
    result = json.loads(_line(engine, "RESULT ", timeout=600))
    return Run(result["wall"], result["latencies"], result["tokens"])


def _line(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """The rest of the next stdout line starting with `marker`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"engine process ended (exit {proc.wait()})")
        if line.startswith(marker):
            return line[len(marker) :]
    raise TimeoutError(f"no {marker!r} line within {timeout} s")


def wait_until(
    ready: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[Any],
    log: Path,
    timeout: float = 600,
) -> None:
    """Poll `ready()` until true; fail at once if `proc` exits, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited; see {log}")
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {timeout:g} s; see {log}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def print_table(results: dict[tuple[int, str], list[Run]], rounds: int) -> dict[int, dict]:
    med: dict[int, dict] = {}
    print(f"\n# {rounds} round(s), medians")
    print(f"{'c':>4} {'way':<20} {'out tok/s':>10} {'req/s':>8} {'p50':>9} {'p99':>9} {'bad':>4}")
    for (c, way), runs in sorted(results.items()):
        row = {
            "tok_s": statistics.median(r.tok_s for r in runs),
            "req_s": statistics.median(r.req_s for r in runs),
            "p50": statistics.median(r.pct(0.5) for r in runs),
            "p99": statistics.median(r.pct(0.99) for r in runs),
            "bad": sum(r.bad for r in runs),
        }
        med.setdefault(c, {})[way] = row
        print(
            f"{c:>4} {way + ' ' + NAMES[way]:<20} {row['tok_s']:>10.0f} {row['req_s']:>8.1f} "
            f"{row['p50']:>7.1f}ms {row['p99']:>7.1f}ms {row['bad']:>4}"
        )
    print(f"\n{'c':>4} {'a/b tok/s':>10} {'a/c tok/s':>10} {'p50 a/b':>8}")
    for c, ways in sorted(med.items()):
        a, b, e = ways["a"], ways["b"], ways["c"]
        print(
            f"{c:>4} {a['tok_s'] / b['tok_s']:>10.2f} {a['tok_s'] / e['tok_s']:>10.2f} "
            f"{a['p50'] / b['p50']:>8.2f}"
        )
    return med


def print_cpu(cpu: dict[tuple[int, str], dict[str, float]], results: dict) -> None:
    """CPU ms per request of each way, by process group, summed over the rounds."""
    print("\n# CPU ms per request, by process (with children), over all rounds")
    for (c, way), used in sorted(cpu.items()):
        n = sum(len(r.latencies) for r in results[(c, way)])
        cells = "  ".join(f"{g} {v * 1000 / n:.2f}" for g, v in used.items())
        print(f"{c:>4} {way}: total {sum(used.values()) * 1000 / n:.2f}  ({cells})")


def print_verdict(med: dict[int, dict]) -> None:
    top, low = max(med), min(med)
    ratio = med[top]["a"]["tok_s"] / med[top]["b"]["tok_s"]
    over = med[low]["a"]["p50"] / med[low]["b"]["p50"] - 1
    print("# target: a/b >= 0.95 tokens/s at the highest concurrency; p50 <= b's + 10 % at c=1")
    print(f"#   c={top}: a/b {ratio:.2f}: {'met' if ratio >= 0.95 else 'missed'}")
    if low == 1:
        verdict = "met" if over <= 0.10 else "missed"
        print(
            f"#   c=1: p50 {med[1]['a']['p50']:.1f} ms vs {med[1]['b']['p50']:.1f} ms, "
            f"{over * 100:+.1f} %: {verdict}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument(
        "--requests", type=int, nargs="+", help="per concurrency (default 32, 16c, 480)"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--model", type=Path, help="model directory (default: the tiny Llama)")
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--engine-args", default=json.dumps(vllm_cpu.TINY_ENGINE_ARGS))
    ap.add_argument("--cpu", action="store_true", help="CPU ms per request, by process")
    args = ap.parse_args()
    if why := vllm_cpu.missing():
        sys.exit(why)
    requests = args.requests or [max(32, min(480, 16 * c)) for c in args.concurrency]
    if len(requests) != len(args.concurrency):
        sys.exit("--requests: one number per --concurrency")
    engine_args: dict[str, Any] = json.loads(args.engine_args)

    tmp = Path(tempfile.mkdtemp(prefix="vllm-path-"))
    model = args.model
    if model is None:
        from services.worker.tiny_model import build

        model = build(tmp / "tiny-llama")
    prompts = make_prompts(model, max(requests), args.prompt_tokens)
    queue, prefix = "bench-vllm", f"bench{uuid.uuid4().hex[:6]}"
    redis_server, rabbit, env = start_servers(
        tmp, QUEUE_NAME=queue, REDIS_PREFIX=prefix, JOB_TIMEOUT="600"
    )
    vllm_env = {**env, **vllm_cpu.CPU_ENV, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[Any]] = []
    try:
        print(f"# starting the three ways (model {model}, engine args {engine_args})", flush=True)
        worker_env = dict(
            vllm_env,
            MODEL_BACKEND="vllm",
            MODEL_PATH=str(model),
            TOKENS_LEN=str(args.max_model_len),
            ENGINE_ARGS=json.dumps(engine_args),
            LOG_LEVEL="INFO",
        )
        worker_log = tmp / "worker.log"
        worker = subprocess.Popen(
            [str(vllm_cpu.PYTHON), "-m", "services.worker"],
            env=worker_env,
            cwd=ROOT,
            stdout=open(worker_log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its engine processes stop with it (stop_all)
        )
        procs.append(worker)
        wait_until(
            lambda: "serving model" in worker_log.read_text(errors="replace"),
            "worker serving",
            worker,
            worker_log,
        )
        stack_port = free_port()
        backend = uvicorn("services.backend.main:app", stack_port, 1, env, tmp / "backend.log")
        procs.append(backend)

        server_port, server_log = free_port(), tmp / "server.log"
        flags = [
            f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
            for k, v in engine_args.items()
        ]
        server = subprocess.Popen(
            [
                str(vllm_cpu.PYTHON),
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(model),
                "--served-model-name",
                "bench",
                "--max-model-len",
                str(args.max_model_len),
                *flags,
                "--host",
                "127.0.0.1",
                "--port",
                str(server_port),
            ],
            env=vllm_env,
            cwd=tmp,
            stdout=open(server_log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its engine processes stop with it (stop_all)
        )
        procs.append(server)
        health = f"http://127.0.0.1:{server_port}/health"
        wait_until(lambda: answers(health), "vLLM's server", server, server_log)

        engine = subprocess.Popen(
            [
                str(vllm_cpu.PYTHON),
                str(ROOT / "bench" / "vllm_engine.py"),
                str(model),
                str(args.max_model_len),
                json.dumps(engine_args),
                str(tmp / "engine.log"),
            ],
            env=vllm_env,
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        procs.append(engine)
        _line(engine, "READY", timeout=600)

        store = redis.Redis(port=redis_server.port)
        stack_url, server_url = f"http://127.0.0.1:{stack_port}", f"http://127.0.0.1:{server_port}"
        # Warm each way (first HTTP connections, the engines' first batches).
        asyncio.run(run_stack(stack_url, store, prefix, 8, prompts[:16], args.max_tokens))
        asyncio.run(run_server(server_url, "bench", 8, prompts[:16], args.max_tokens))
        run_engine(engine, 8, prompts[:16], args.max_tokens)

        groups = {
            "a": {
                "backend": [backend.pid],
                "worker": [worker.pid],
                **server_groups(rabbit, redis_server),
            },
            "b": {"server": [server.pid]},
            "c": {"engine": [engine.pid]},
        }
        results: dict[tuple[int, str], list[Run]] = {}
        cpu: dict[tuple[int, str], dict[str, float]] = {}
        for r in range(args.rounds):
            for c, n in zip(args.concurrency, requests, strict=True):
                batch = prompts[:n]

                def drive(way: str, c: int = c, batch: list[str] = batch) -> Run:
                    if way == "a":
                        return asyncio.run(
                            run_stack(stack_url, store, prefix, c, batch, args.max_tokens)
                        )
                    if way == "b":
                        return asyncio.run(
                            run_server(server_url, "bench", c, batch, args.max_tokens)
                        )
                    return run_engine(engine, c, batch, args.max_tokens)

                runs: dict[str, Run] = {}
                for way in WAYS:
                    before, mine = cpu_by_group(groups[way]), time.process_time()
                    runs[way] = drive(way)
                    if args.cpu:
                        after = cpu_by_group(groups[way])
                        used = cpu.setdefault((c, way), {"load generator": 0.0})
                        used["load generator"] += time.process_time() - mine
                        for g in after:
                            used[g] = used.get(g, 0.0) + after[g] - before[g]
                for way, run in runs.items():
                    results.setdefault((c, way), []).append(run)
                line = "  ".join(f"{w} {x.tok_s:.0f} tok/s" for w, x in runs.items())
                print(f"# round {r + 1} c={c} ({n} requests): {line}", flush=True)
        print(
            f"# {args.prompt_tokens} prompt tokens, at most {args.max_tokens} out, greedy; "
            f"max_model_len {args.max_model_len}"
        )
        med = print_table(results, args.rounds)
        if args.cpu:
            print_cpu(cpu, results)
        print_verdict(med)
        store.close()
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        stop_all(procs, rabbit, redis_server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
