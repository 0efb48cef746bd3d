"""The LLM summary of a run, from Locust's own statistics: live (`environment.stats`, at the end of
a run, on the master in distributed mode since workers report every entry to it) or afterwards
from the `--csv` files Locust wrote. Both become the same `Entry` rows, so the table printed at the
end of a run and the sweep's CSV and plot agree.

Locust's "Aggregated" row mixes the requests with the metric entries (see users.py); the summary
counts only the requests (entries of type POST) and reads each metric from its own entry.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUEST = "POST"
METRICS = ("TTFT", "ITL", "QUEUE", "GEN", "TOK/S")
STATUSES = ("429", "503", "504", "502")  # the statuses an LLM backend answers under load
ALL = "all"


@dataclass(frozen=True)
class Entry:
    kind: str  # Locust's request type: POST, or a metric (TTFT, ITL, QUEUE, GEN, TOK/S)
    name: str
    count: int
    failures: int
    rps: float
    avg: float
    p50: float | None
    p90: float | None
    p99: float | None
    avg_size: float


@dataclass(frozen=True)
class ErrorCount:
    kind: str
    name: str
    error: str
    count: int


@dataclass
class Row:
    """One endpoint (or `all`): requests, latencies in ms, tokens, error counts by class."""

    endpoint: str
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    e2e_p50: float | None = None
    e2e_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p99: float | None = None
    itl_p50: float | None = None
    itl_p99: float | None = None
    queue_p50: float | None = None
    queue_p99: float | None = None
    gen_p50: float | None = None
    gen_p99: float | None = None
    req_tok_s_p50: float | None = None  # a request's output tokens/s, median over requests
    out_tok_s: float = 0.0  # all output tokens per second of the run
    errors: dict[str, int] = field(default_factory=dict)  # 429, 503, 504, 502, other, transport

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def as_csv(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": self.endpoint, "requests": self.requests}
        out["failures"] = self.failures
        out["fail_ratio"] = round(self.fail_ratio, 6)
        out["req_per_s"] = round(self.rps, 3)
        out["out_tokens_per_s"] = round(self.out_tok_s, 2)
        for key in ("e2e", "ttft", "itl", "queue", "gen"):
            for p in ("p50", "p99"):
                value = getattr(self, f"{key}_{p}")
                out[f"{key}_{p}_ms"] = "" if value is None else value
        out["req_tokens_per_s_p50"] = "" if self.req_tok_s_p50 is None else self.req_tok_s_p50
        for status in (*STATUSES, "other", "transport"):
            out[f"errors_{status}"] = self.errors.get(status, 0)
        return out


CSV_FIELDS = list(Row("").as_csv())


def error_class(error: str) -> str:
    """'CatchResponseError('HTTP 429')' -> '429'; transport errors and the rest apart."""
    if m := re.search(r"HTTP (\d{3})", error):
        return m.group(1) if m.group(1) in STATUSES else "other"
    return "transport" if "transport:" in error else "other"


def summarise(entries: Iterable[Entry], errors: Iterable[ErrorCount]) -> list[Row]:
    """A row per endpoint name, sorted, then `all` (sums; latency percentiles are per endpoint
    only, since percentiles of different entries cannot be combined)."""
    rows: dict[str, Row] = {}
    for e in entries:
        if e.kind != REQUEST and e.kind not in METRICS:
            continue
        row = rows.setdefault(e.name, Row(e.name))
        if e.kind == REQUEST:
            row.requests, row.failures, row.rps = e.count, e.failures, e.rps
            row.e2e_p50, row.e2e_p99 = e.p50, e.p99
        elif e.kind == "TOK/S":
            row.req_tok_s_p50 = e.p50
            row.out_tok_s = e.avg_size * e.rps  # tokens per request x requests per second
        else:
            key = e.kind.lower()
            setattr(row, f"{key}_p50", e.p50)
            setattr(row, f"{key}_p99", e.p99)
    for err in errors:
        if err.kind == REQUEST:
            row = rows.setdefault(err.name, Row(err.name))
            cls = error_class(err.error)
            row.errors[cls] = row.errors.get(cls, 0) + err.count
    out = [rows[name] for name in sorted(rows) if rows[name].requests]
    total = Row(ALL)
    for row in out:
        total.requests += row.requests
        total.failures += row.failures
        total.rps += row.rps
        total.out_tok_s += row.out_tok_s
        for cls, n in row.errors.items():
            total.errors[cls] = total.errors.get(cls, 0) + n
    if len(out) == 1:
        total = Row(**{**vars(out[0]), "endpoint": ALL})
    return [*out, total]


def entries_from_stats(stats: Any) -> list[Entry]:
    """Locust's live `RequestStats`."""
    out = []
    for entry in stats.entries.values():
        n = entry.num_requests

        def pct(p: float, e: Any = entry, n: int = n) -> float | None:
            return float(e.get_response_time_percentile(p)) if n else None

        out.append(
            Entry(
                kind=entry.method,
                name=entry.name,
                count=n,
                failures=entry.num_failures,
                rps=float(entry.total_rps),
                avg=float(entry.avg_response_time),
                p50=pct(0.5),
                p90=pct(0.9),
                p99=pct(0.99),
                avg_size=float(entry.avg_content_length),
            )
        )
    return out


def errors_from_stats(stats: Any) -> list[ErrorCount]:
    return [
        ErrorCount(e.method, e.name, str(e.error), e.occurrences) for e in stats.errors.values()
    ]


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None  # "N/A"


def entries_from_csv(path: Path) -> list[Entry]:
    """Locust's `PREFIX_stats.csv`."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["Name"] == "Aggregated":
                continue
            out.append(
                Entry(
                    kind=r["Type"],
                    name=r["Name"],
                    count=int(r["Request Count"]),
                    failures=int(r["Failure Count"]),
                    rps=float(r["Requests/s"]),
                    avg=float(r["Average Response Time"]),
                    p50=_number(r["50%"]),
                    p90=_number(r["90%"]),
                    p99=_number(r["99%"]),
                    avg_size=float(r["Average Content Size"]),
                )
            )
    return out


def errors_from_csv(path: Path) -> list[ErrorCount]:
    """Locust's `PREFIX_failures.csv`."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [
            ErrorCount(r["Method"], r["Name"], r["Error"], int(r["Occurrences"]))
            for r in csv.DictReader(f)
        ]


def from_csv(prefix: Path) -> list[Row]:
    """The summary of the run Locust wrote with `--csv PREFIX`."""
    stats = prefix.with_name(prefix.name + "_stats.csv")
    failures = prefix.with_name(prefix.name + "_failures.csv")
    return summarise(entries_from_csv(stats), errors_from_csv(failures))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(rows: list[Row]) -> str:
    """The summary as text: latencies (ms) and tokens, then error counts by status."""
    width = max([len("endpoint"), *(len(r.endpoint) for r in rows)])
    head = (
        f"{'endpoint':<{width}} {'reqs':>7} {'fail%':>6} {'req/s':>7} {'e2e p50':>8} "
        f"{'p99':>7} {'TTFT p50':>8} {'p99':>7} {'ITL p50':>7} {'tok/s/req':>9} "
        f"{'out tok/s':>9} {'queue p50':>9} {'p99':>7} {'gen p50':>7} {'p99':>7}"
    )
    lines = ["LLM summary (times in ms; tok/s/req: median of each request's output tokens/s)"]
    lines += [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.endpoint:<{width}} {r.requests:>7} {100 * r.fail_ratio:>6.2f} {r.rps:>7.2f} "
            f"{_ms(r.e2e_p50):>8} {_ms(r.e2e_p99):>7} {_ms(r.ttft_p50):>8} {_ms(r.ttft_p99):>7} "
            f"{_ms(r.itl_p50):>7} {_ms(r.req_tok_s_p50):>9} {r.out_tok_s:>9.1f} "
            f"{_ms(r.queue_p50):>9} {_ms(r.queue_p99):>7} {_ms(r.gen_p50):>7} {_ms(r.gen_p99):>7}"
        )
    classes = (*STATUSES, "other", "transport")
    head = f"{'endpoint':<{width}} " + " ".join(f"{c:>14}" for c in classes)
    lines += ["", "Errors by status (count, % of requests)", head, "-" * len(head)]
    for r in rows:
        cells = [
            f"{r.errors.get(c, 0)} ({100 * r.errors.get(c, 0) / (r.requests or 1):.1f}%)"
            for c in classes
        ]
        lines.append(f"{r.endpoint:<{width}} " + " ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)
