"""The LLM summary: requests apart from metric entries, error statuses apart from transport
errors, and the same rows from Locust's CSV files as from its live statistics."""

from pathlib import Path

import pytest
from llmload import report
from llmload.report import Entry, ErrorCount

STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
)


def entry(kind: str, name: str, count: int, p50: float, p99: float, **kw: float) -> Entry:
    return Entry(
        kind=kind,
        name=name,
        count=count,
        failures=int(kw.get("failures", 0)),
        rps=kw.get("rps", 1.0),
        avg=p50,
        p50=p50,
        p90=p99,
        p99=p99,
        avg_size=kw.get("size", 0.0),
    )


STREAM = "/v1/chat/completions stream @m"
ENTRIES = [
    entry("POST", "/generate @m", 100, 900, 1500, failures=10, rps=10.0),
    entry("QUEUE", "/generate @m", 90, 20, 300),
    entry("GEN", "/generate @m", 90, 850, 1200),
    entry("TOK/S", "/generate @m", 90, 95, 99, rps=9.0, size=100.0),
    entry("POST", STREAM, 50, 800, 1400, rps=5.0),
    entry("TTFT", STREAM, 50, 30, 90),
    entry("ITL", STREAM, 50, 10, 12),
    entry("TOK/S", STREAM, 50, 90, 98, rps=5.0, size=60.0),
    entry("GET", "/v1/models", 1, 5, 5),  # not an LLM request
]
ERRORS = [
    ErrorCount("POST", "/generate @m", "CatchResponseError('HTTP 429')", 6),
    ErrorCount("POST", "/generate @m", "CatchResponseError('HTTP 503')", 2),
    ErrorCount("POST", "/generate @m", "CatchResponseError('transport: ConnectionError')", 1),
    ErrorCount("POST", "/generate @m", "CatchResponseError('HTTP 401')", 1),
]


def test_rows_per_endpoint_and_a_total() -> None:
    gen, stream, total = report.summarise(ENTRIES, ERRORS)
    assert (gen.endpoint, stream.endpoint, total.endpoint) == ("/generate @m", STREAM, "all")
    assert (gen.requests, gen.failures, gen.fail_ratio) == (100, 10, 0.1)
    assert (gen.e2e_p50, gen.e2e_p99, gen.queue_p50, gen.gen_p99) == (900, 1500, 20, 1200)
    assert gen.ttft_p50 is None and stream.ttft_p50 == 30 and stream.itl_p99 == 12
    assert gen.out_tok_s == pytest.approx(900.0)  # 100 tokens a request, 9 requests/s
    assert gen.errors == {"429": 6, "503": 2, "transport": 1, "other": 1}
    assert (total.requests, total.failures, total.rps) == (150, 10, 15.0)
    assert total.out_tok_s == pytest.approx(1200.0)
    assert total.e2e_p99 is None  # percentiles of two entries cannot be combined
    assert total.errors["429"] == 6
    text = report.table([gen, stream, total])
    assert "LLM summary" in text and "6 (6.0%)" in text


def test_one_endpoint_is_its_own_total() -> None:
    rows = report.summarise(ENTRIES[:4], [])
    assert [r.endpoint for r in rows] == ["/generate @m", "all"]
    assert rows[1].e2e_p99 == 1500


def test_locust_csv_files_give_the_same_rows(tmp_path: Path) -> None:
    lines = [STATS_HEADER]
    for e in ENTRIES:
        pct = ",".join(str(int(v)) for v in (e.p50, e.p50, e.p50, e.p50, e.p90, e.p99, e.p99))
        lines.append(
            f"{e.kind},{e.name},{e.count},{e.failures},{e.p50},{e.avg},1,{e.p99},{e.avg_size},"
            f"{e.rps},0,{pct},{int(e.p99)},{int(e.p99)},{int(e.p99)},{int(e.p99)}\n"
        )
    lines.append(",Aggregated,441,10,,,,,,40,1,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n")
    (tmp_path / "run_stats.csv").write_text("".join(lines))
    failures = "Method,Name,Error,Occurrences,First Seen,Last Seen\n" + "".join(
        f'{e.kind},{e.name},"{e.error}",{e.count},0,0\n' for e in ERRORS
    )
    (tmp_path / "run_failures.csv").write_text(failures)
    assert report.from_csv(tmp_path / "run") == report.summarise(ENTRIES, ERRORS)


def test_error_classes() -> None:
    assert report.error_class("CatchResponseError('HTTP 504')") == "504"
    assert report.error_class("CatchResponseError('HTTP 404')") == "other"
    assert report.error_class("CatchResponseError('transport: ReadTimeout')") == "transport"
    assert report.error_class("CatchResponseError('stream error: server_error')") == "other"
