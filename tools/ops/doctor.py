"""`python -m tools.ops.doctor`: why requests fail, checked in the order they travel.

    python -m tools.ops.doctor [--url URL] [--api-key KEY] [--no-generate] [--fleet FLEET.yaml]
                               [--strict] [--json]

Each check prints one line, `ok`, `warn`, `FAIL` or `skip`, with what it saw and, when something
is wrong, the fix. In order:
- settings: the services' settings load (RABBIT_MQ_*, REDIS_*, REDIS_PREFIX, QUEUE_NAME; from
  the environment or `.env`), so the doctor reads what the services read;
- redis: reachable, a version with streams (5.0+), and no eviction policy that could drop job
  records and answers under memory pressure;
- clock: this host's clock agrees with Redis' (jobs are timed on Redis' clock; logs are not);
- rabbitmq: reachable with these credentials;
- models: each announced model has a live worker, its queue a consumer, no jobs waiting with
  nobody to take them, no dead letters; the default model (QUEUE_NAME) is served;
- fleet (`--fleet`): the spec is valid (and its GPUs exist on this host, when nvidia-smi is
  here), every model in it announced, with the backend it declares; the fleet's redis_prefix is
  the one read;
- api (`--url`): /health, /ready, /v1/models (with `--api-key` or LLM_WRAP_API_KEY), the same
  models as Redis announces, and one 1-token completion per model through the whole path
  (HTTP -> RabbitMQ -> worker -> Redis), unless `--no-generate`.
Exit status 1 when a check failed (`--strict`: or warned), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from services.common import clock
from services.common.settings import CommonSettings
from tools.ops.state import Snapshot, take

Level = Literal["ok", "warn", "FAIL", "skip"]
# Redis streams (a job's pieces) arrived in 5.0.
MIN_REDIS = (5, 0)
# A skew an operator must fix (logs out of order across hosts, TLS validity checks off).
CLOCK_FAIL_S = 5.0
# Seconds one generation check may take: a cold worker or a queue with a backlog is slow, not
# broken, but an operator waiting on the doctor should not wait for JOB_TIMEOUT.
GENERATE_TIMEOUT_S = 60.0


@dataclass
class Finding:
    level: Level
    check: str
    detail: str
    fix: str = ""


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


_TLS_FIX = (
    "a TLS problem: TLS_CA_FILE must hold the CA that signed the server's certificate, which "
    "must name {host}; a server that wants a client certificate needs TLS_CERT_FILE and "
    "TLS_KEY_FILE"
)


def _tls_problem(error: str) -> bool:
    return any(word in error for word in ("SSL", "CERTIFICATE", "certificate", "TLS"))


def _clock(offset: float) -> Finding:
    """Heartbeats and deadlines compare clocks across hosts (services/common/clock.py)."""
    if abs(offset) <= clock.WARN_S:
        return Finding("ok", "clock", f"this host's clock is within {clock.WARN_S:g} s of Redis'")
    side = "behind" if offset > 0 else "ahead of"
    level: Level = "FAIL" if abs(offset) >= CLOCK_FAIL_S else "warn"
    return Finding(
        level,
        "clock",
        f"this host's clock is {abs(offset):.1f} s {side} Redis': the stack times jobs on "
        "Redis' clock, but this host's logs, cron jobs and certificates' validity read its own",
        "sync the clocks of every host (NTP, e.g. `chronyc tracking`; `timedatectl`)",
    )


def check_store(snap: Snapshot) -> Iterator[Finding]:
    s = snap.settings
    where = f"{s.REDIS_HOST}:{s.REDIS_PORT}"
    if snap.redis is None:
        error = snap.redis_error or ""
        yield Finding(
            "FAIL",
            "redis",
            f"cannot reach Redis at {where}: {error}",
            _TLS_FIX.format(host="REDIS_HOST")
            if _tls_problem(error)
            else "check REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_TLS, and that Redis "
            "runs (`docker compose ps redis`)",
        )
        return
    r = snap.redis
    if _version(r.version) < MIN_REDIS:
        yield Finding(
            "FAIL",
            "redis",
            f"Redis {r.version} at {where}: streamed answers need Redis 5.0 or later",
            "upgrade Redis",
        )
        return
    tls = " over TLS" if s.REDIS_TLS else ""
    yield Finding("ok", "redis", f"Redis {r.version} at {where}{tls}, prefix {s.REDIS_PREFIX!r}")
    yield _clock(r.clock_offset)
    if r.policy is None:
        yield Finding(
            "skip",
            "redis memory",
            "CONFIG GET refused: maxmemory-policy not read",
        )
    elif r.maxmemory and r.policy != "noeviction":
        yield Finding(
            "warn",
            "redis memory",
            f"maxmemory {r.maxmemory} bytes with maxmemory-policy {r.policy}: under memory "
            "pressure Redis may evict job records and answers before clients read them",
            "set maxmemory-policy noeviction (a full Redis then refuses writes, and the API "
            "answers 503, instead of losing answers)",
        )
    else:
        limit = f"maxmemory {r.maxmemory} bytes" if r.maxmemory else "no maxmemory"
        yield Finding("ok", "redis memory", f"{limit}, maxmemory-policy {r.policy}")


def check_broker(snap: Snapshot) -> Iterator[Finding]:
    s = snap.settings
    where = f"{s.RABBIT_MQ_HOST}:{s.RABBIT_MQ_PORT}"
    if snap.broker_error is not None:
        refused = "ACCESS_REFUSED" in snap.broker_error or "Authentication" in snap.broker_error
        if refused:
            fix = "check RABBIT_MQ_LOGIN / RABBIT_MQ_PASSWORD / RABBIT_MQ_VHOST"
        elif _tls_problem(snap.broker_error):
            fix = _TLS_FIX.format(host="RABBIT_MQ_HOST")
        else:
            fix = (
                "check RABBIT_MQ_HOST / RABBIT_MQ_PORT / RABBIT_MQ_TLS, and that RabbitMQ runs "
                "(`docker compose ps rabbitmq`)"
            )
        yield Finding(
            "FAIL", "rabbitmq", f"cannot use RabbitMQ at {where}: {snap.broker_error}", fix
        )
        return
    tls = " over TLS" if s.RABBIT_MQ_TLS else ""
    yield Finding(
        "ok", "rabbitmq", f"{snap.broker_version} at {where}{tls}, vhost {s.RABBIT_MQ_VHOST!r}"
    )


def check_models(snap: Snapshot) -> Iterator[Finding]:
    if snap.redis is None:
        yield Finding("skip", "models", "Redis not reachable")
        return
    default = snap.settings.QUEUE_NAME
    if not snap.models:
        yield Finding(
            "FAIL",
            "models",
            f"no model announced under prefix {snap.settings.REDIS_PREFIX!r}: the API answers "
            "404 to every request",
            "start the workers (`docker compose ps`, `docker compose logs worker-NAME`); a vLLM "
            "worker announces itself once its engine is warm, which can take minutes. Is "
            "REDIS_PREFIX the one the fleet uses?",
        )
        return
    for m in snap.models:
        name = f"model {m.model}"
        q = m.queue_state
        if m.live_workers == 0:
            ago = snap.taken_at - m.last_seen
            yield Finding(
                "FAIL",
                name,
                f"no live worker on queue {m.queue!r} (last heartbeat {ago:.0f} s ago): its "
                "requests get 503",
                f"`docker compose logs worker-{m.model}`; a worker whose engine died exits and "
                "is restarted by compose",
            )
            continue
        if q is None:
            yield Finding("ok", name, f"{m.live_workers} live worker(s) ({m.backend})")
            continue
        if not q.exists:
            yield Finding(
                "FAIL",
                name,
                f"{m.live_workers} live worker(s) but queue {m.queue!r} does not exist on this "
                "broker",
                "the workers use another RabbitMQ (RABBIT_MQ_HOST / RABBIT_MQ_VHOST) than the "
                "one read here",
            )
            continue
        detail = (
            f"{m.live_workers} live worker(s) ({m.backend}), queue {m.queue!r}: "
            f"{q.consumers} consumer(s), {q.ready} waiting"
        )
        if q.consumers == 0:
            yield Finding(
                "FAIL",
                name,
                detail + ": nobody takes its jobs",
                "the workers heartbeat but do not consume: see their logs (lost broker?)",
            )
        elif q.dead:
            yield Finding(
                "warn",
                name,
                detail + f", {q.dead} dead-lettered",
                f"see why: `python -m tools.ops.deadletters list {m.queue}`; run them again "
                "with `replay`",
            )
        else:
            yield Finding("ok", name, detail)
    if default not in {m.queue for m in snap.models}:
        yield Finding(
            "warn",
            "default model",
            f"QUEUE_NAME {default!r} is no announced model's queue: a request without "
            "meta.model gets 404",
            "set QUEUE_NAME (backend) to the queue of the model clients get by default",
        )


def check_fleet(path: Path, snap: Snapshot) -> Iterator[Finding]:
    try:  # the fleet extra (jinja2, PyYAML, jsonschema): not in the backend image
        from tools.fleet import inventory
        from tools.fleet.build import build
        from tools.fleet.problems import FleetError
        from tools.fleet.render import prepare
    except ImportError as e:
        yield Finding(
            "FAIL",
            "fleet",
            f"--fleet needs the fleet generator, not installed here ({e})",
            "run it where `python -m tools.fleet` works (the repository's .venv)",
        )
        return
    inv = None
    gpus_checked = "GPUs not checked (no nvidia-smi on this host)"
    if shutil.which("nvidia-smi"):
        try:
            inv = inventory.query()
            gpus_checked = f"GPUs checked against {inv.describe()}"
        except inventory.InventoryError as e:
            gpus_checked = f"GPUs not checked: {e}"
    try:
        fleet = build(path, inv)
        prepare(fleet)
    except FleetError as e:
        for problem in e.problems:
            if not problem.warning:
                yield Finding("FAIL", "fleet", f"{path}: {problem}", "fix the spec, then render")
        return
    except OSError as e:
        yield Finding("FAIL", "fleet", f"{path}: {e}")
        return
    spec = fleet.spec
    for problem in fleet.warnings:
        yield Finding("warn", "fleet", f"{path}: {problem}")
    yield Finding("ok", "fleet", f"{path}: valid, {len(spec.models)} model(s); {gpus_checked}")
    if spec.redis_prefix != snap.settings.REDIS_PREFIX:
        yield Finding(
            "warn",
            "fleet",
            f"the fleet's redis_prefix is {spec.redis_prefix!r}, REDIS_PREFIX here is "
            f"{snap.settings.REDIS_PREFIX!r}: the checks above read another stack's keys",
            f"REDIS_PREFIX={spec.redis_prefix} python -m tools.ops.doctor ...",
        )
        return
    if snap.redis is None:
        return
    announced = {m.model: m for m in snap.models}
    for i, model in enumerate(spec.models):
        seen = announced.get(model.name)
        queue = model.queue or model.name
        if seen is None:
            yield Finding(
                "FAIL",
                "fleet",
                f"models[{i}] {model.name}: no worker ever announced it",
                f"`docker compose logs worker-{model.name}` (still loading, or exiting at start?)",
            )
        elif seen.queue != queue or (seen.backend and seen.backend != model.backend):
            yield Finding(
                "warn",
                "fleet",
                f"models[{i}] {model.name}: announced on queue {seen.queue!r} by a "
                f"{seen.backend!r} worker; the spec says queue {queue!r}, backend "
                f"{model.backend!r}",
                "render the fleet again and `docker compose up -d`: the running workers are "
                "not the spec's",
            )
    extra = sorted(set(announced) - {m.name for m in spec.models})
    if extra:
        yield Finding(
            "warn",
            "fleet",
            f"announced but not in {path}: {', '.join(extra)} (announcements are kept a day; "
            "another fleet sharing this REDIS_PREFIX?)",
        )


def _call(
    url: str, key: str, body: dict[str, Any] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    """One HTTP exchange (stdlib: the backend image has no HTTP client); (status, body).
    Connection failures and timeouts raise OSError / TimeoutError."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _message(body: bytes) -> str:
    """The error message of an answer: OpenAI's `error.message`, `detail`, or the text."""
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed.get("error"), dict):
            return str(parsed["error"]["message"])
        return str(parsed["detail"])
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


def check_api(url: str, key: str, snap: Snapshot, generate: bool) -> Iterator[Finding]:
    try:
        status, _ = _call(url + "/health", key)
    except (OSError, TimeoutError) as e:
        yield Finding("FAIL", "api", f"{url}: {e}", "is the backend running, on this address?")
        return
    if status != 200:
        yield Finding("FAIL", "api", f"{url}/health: HTTP {status}")
        return
    status, body = _call(url + "/ready", key)
    if status != 200:
        yield Finding(
            "FAIL",
            "api",
            f"{url}/ready: HTTP {status}: {_message(body)}",
            "the backend cannot reach RabbitMQ or Redis: check its environment",
        )
        return
    yield Finding("ok", "api", f"{url}: up and ready")
    status, body = _call(url + "/v1/models", key)
    if status == 401:
        yield Finding(
            "FAIL",
            "api",
            f"{url}/v1/models: 401, the API wants a key",
            "pass --api-key KEY or set LLM_WRAP_API_KEY (the fleet keeps it in "
            "env/secrets.env, API_KEYS)",
        )
        return
    if status != 200:
        yield Finding("FAIL", "api", f"{url}/v1/models: HTTP {status}: {_message(body)}")
        return
    served = [m["id"] for m in orjson.loads(body).get("data", [])]
    announced = [m.model for m in snap.models]
    if snap.redis is not None and sorted(served) != sorted(announced):
        yield Finding(
            "warn",
            "api",
            f"the API lists {served}, Redis under prefix {snap.settings.REDIS_PREFIX!r} "
            f"announces {announced}",
            "the backend reads another Redis or REDIS_PREFIX than the one read here",
        )
    if not generate:
        return
    for model in served:
        check = f"generate {model}"
        started = time.perf_counter()
        try:
            status, body = _call(
                url + "/v1/completions",
                key,
                {"model": model, "prompt": "doctor", "max_tokens": 1, "temperature": 0},
                timeout=GENERATE_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as e:
            yield Finding(
                "FAIL",
                check,
                f"no answer within {GENERATE_TIMEOUT_S:.0f} s ({e})",
                f"a backlog or a stuck worker: `python -m tools.ops.status`, "
                f"`docker compose logs worker-{model}`",
            )
            continue
        ms = (time.perf_counter() - started) * 1000
        if status == 200:
            yield Finding("ok", check, f"one token through the queue: {ms:.0f} ms")
        else:
            yield Finding("FAIL", check, f"HTTP {status}: {_message(body)}")


def run(args: argparse.Namespace) -> list[Finding]:
    try:
        settings = CommonSettings()
    except ValidationError as e:
        return [
            Finding(
                "FAIL",
                "settings",
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}",
                "fix the variable (environment or .env)",
            )
            for err in e.errors()
        ]
    findings = [
        Finding(
            "ok",
            "settings",
            f"RabbitMQ {settings.RABBIT_MQ_HOST}:{settings.RABBIT_MQ_PORT}, Redis "
            f"{settings.REDIS_HOST}:{settings.REDIS_PORT}, prefix {settings.REDIS_PREFIX!r}, "
            f"default queue {settings.QUEUE_NAME!r}",
        )
    ]
    snap = asyncio.run(take(settings, [settings.QUEUE_NAME]))
    findings += check_store(snap)
    findings += check_broker(snap)
    findings += check_models(snap)
    if args.fleet:
        findings += check_fleet(Path(args.fleet), snap)
    if args.url:
        findings += check_api(args.url.rstrip("/"), args.api_key, snap, not args.no_generate)
    return findings


def _default_key() -> str:
    own = os.environ.get("API_KEYS", "").split(",")[0].strip()
    return os.environ.get("LLM_WRAP_API_KEY") or own


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tools.ops.doctor", description=(__doc__ or "").split("\n")[0]
    )
    ap.add_argument("--url", help="the API to check end to end, e.g. http://127.0.0.1:6672")
    ap.add_argument(
        "--api-key",
        default=_default_key(),
        help="API key for --url (default: LLM_WRAP_API_KEY, else the first of API_KEYS, as in "
        "the backend's own container)",
    )
    ap.add_argument("--no-generate", action="store_true", help="no test completion per model")
    ap.add_argument("--fleet", help="FLEET.yaml the running stack was rendered from")
    ap.add_argument("--strict", action="store_true", help="warnings fail too")
    ap.add_argument("--json", action="store_true", help="one JSON list of findings")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    findings = run(args)
    if args.json:
        sys.stdout.write(orjson.dumps([asdict(f) for f in findings]).decode() + "\n")
    else:
        width = max(len(f.check) for f in findings)
        for f in findings:
            sys.stdout.write(f"{f.level:<4}  {f.check:<{width}}  {f.detail}\n")
            if f.fix and f.level in ("warn", "FAIL"):
                sys.stdout.write(f"{'':<4}  {'':<{width}}  fix: {f.fix}\n")
        counts = {level: sum(f.level == level for f in findings) for level in ("FAIL", "warn")}
        sys.stdout.write(f"# {counts['FAIL']} failed, {counts['warn']} warning(s)\n")
    failed = any(f.level == "FAIL" or (args.strict and f.level == "warn") for f in findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
