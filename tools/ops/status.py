"""`python -m tools.ops.status`: the fleet at a glance, from the broker and the store themselves.

    python -m tools.ops.status [--json] [--watch SECONDS] [--queue NAME ...]

One line per announced model: its queue, the backend its workers run (MODEL_BACKEND), the
workers alive now (heartbeats in Redis; by host where workers name theirs, WORKER_HOST, as a
fleet over several hosts does), the queue's consumers, the jobs waiting in it and those
dead-lettered, and when a worker last announced it. A model whose workers are all gone stays
listed (0 live) for a day, so a crashed fleet shows as such, not as empty. `--queue` adds queues
nobody announced (e.g. one whose workers never started). Exit 1 when RabbitMQ or Redis cannot
be reached. Settings as the services' (RABBIT_MQ_*, REDIS_*, REDIS_PREFIX; environment or `.env`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import Sequence

import orjson

from services.common.settings import CommonSettings
from tools.ops.state import ModelRow, Snapshot, take

EXIT_UNREACHABLE = 1


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _workers(m: ModelRow) -> str:
    """The live workers: a count, and per host where any names one."""
    if not any(m.hosts):
        return str(m.live_workers)
    each = ", ".join(f"{host or 'unnamed'} {n}" for host, n in m.hosts.items())
    return f"{m.live_workers} ({each})"


def render(snap: Snapshot) -> str:
    s = snap.settings
    when = dt.datetime.fromtimestamp(snap.taken_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if snap.broker_error is not None:
        broker = f"UNREACHABLE ({snap.broker_error})"
    else:
        broker = snap.broker_version or "?"
    if snap.redis is not None:
        store = f"Redis {snap.redis.version}, {_mib(snap.redis.used_memory)} used"
    else:
        store = f"Redis UNREACHABLE ({snap.redis_error})"
    lines = [
        f"# {when}",
        f"# broker {s.RABBIT_MQ_HOST}:{s.RABBIT_MQ_PORT}: {broker}",
        f"# store  {s.REDIS_HOST}:{s.REDIS_PORT}: {store}; prefix {s.REDIS_PREFIX!r}",
    ]
    rows = [("model", "queue", "backend", "workers", "consumers", "queued", "dead", "announced")]
    for m in snap.models:
        q = m.queue_state
        rows.append(
            (
                m.model,
                m.queue,
                m.backend or "?",
                _workers(m),
                "?" if q is None else str(q.consumers) if q.exists else "no queue",
                "?" if q is None or not q.exists else str(q.ready),
                "?" if q is None or q.dead is None else str(q.dead),
                _ago(max(0.0, snap.taken_at - m.last_seen)),
            )
        )
    announced = {m.queue for m in snap.models}
    for name, q in snap.queues.items():
        if name in announced:
            continue
        rows.append(
            (
                "-",
                name,
                "-",
                "0",
                str(q.consumers) if q.exists else "no queue",
                str(q.ready) if q.exists else "-",
                "-" if q.dead is None else str(q.dead),
                "never",
            )
        )
    if len(rows) == 1:
        if snap.redis_error is not None:
            lines.append("models unknown: Redis (where workers announce them) is unreachable")
        else:
            lines.append("no model announced (no worker has started with this REDIS_PREFIX)")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tools.ops.status", description=(__doc__ or "").split("\n")[0]
    )
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ap.add_argument("--watch", type=float, metavar="SECONDS", help="print again every SECONDS")
    ap.add_argument("--queue", action="append", default=[], help="also show this queue")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = CommonSettings()
    while True:
        snap = asyncio.run(take(settings, args.queue))
        text = orjson.dumps(snap.as_json()).decode() if args.json else render(snap)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if args.watch is None:
            return EXIT_UNREACHABLE if snap.redis_error or snap.broker_error else 0
        time.sleep(args.watch)
        if not args.json:
            sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
