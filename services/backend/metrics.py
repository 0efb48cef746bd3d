"""Prometheus metrics of the backend (served at GET /metrics)."""

import functools

from prometheus_client import Counter, Gauge, Histogram

from services.common.protocol import FINAL_STATUSES, JobStatus

JOBS = Counter("llm_wrap_jobs_total", "Jobs that reached an outcome", ["queue", "status"])
JOB_SECONDS = Histogram(
    "llm_wrap_job_seconds",
    "Time from accepting a job to its outcome",
    ["queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
REJECTED = Counter(
    "llm_wrap_requests_rejected_total", "Requests answered with an error status", ["status"]
)
JOBS_WAITING = Gauge("llm_wrap_jobs_waiting", "Requests of this process waiting for their job")


@functools.cache
def job_metrics(queue: str) -> tuple[Histogram, dict[JobStatus, Counter]]:
    """A queue's metric children, looked up once (`labels()` takes a lock and builds a key on
    every call). Bounded: only queues with live workers get this far."""
    return JOB_SECONDS.labels(queue), {s: JOBS.labels(queue, s.value) for s in FINAL_STATUSES}
