"""Backend and workers on hosts whose clocks disagree: every time another host compares
(heartbeats, job deadlines, started/finished marks) is on Redis' clock, so a skew of 30 s, far
more than the heartbeat TTL, changes nothing a client sees. Each process here runs with its own
wall clock shifted (libfaketime); Redis and RabbitMQ keep the host's."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.utils.clock import skewed
from tools.local.stack import Stack


@pytest.mark.parametrize(
    ("backend_clock", "worker_clock"),
    [("", "-30s"), ("", "+30s"), ("-30s", ""), ("+30s", "-30s")],
    ids=["worker-behind", "worker-ahead", "backend-behind", "backend-ahead-worker-behind"],
)
def test_skewed_hosts_serve_as_if_their_clocks_agreed(
    stack: Stack, queue: str, backend_clock: str, worker_clock: str
) -> None:
    # On their own clocks: a worker behind would announce heartbeats expired on arrival (no live
    # worker: 503); with jobs given 20 s, a worker ahead or a backend behind would find every
    # job past its deadline (504); and every job's queue wait would be off by the skew.
    worker = stack.worker(queue, MODEL_NAME="m", **(skewed(worker_clock) if worker_clock else {}))
    backend = stack.backend(
        QUEUE_NAME=queue, JOB_TIMEOUT=20, **(skewed(backend_clock) if backend_clock else {})
    )
    if worker_clock:
        assert "this host's clock is 30." in worker.output()
    for n in range(3):
        r = httpx.post(
            backend.url + "/generate", json={"content": f"on time {n}", "meta": {"model": "m"}}
        )
        assert (r.status_code, r.json()) == (200, {"content": f"on time {n}"}), r.text
    # The job's marks are on one clock: its queue wait is small, not +-30 s.
    submitted = httpx.post(backend.url + "/v1/jobs", json={"model": "m", "prompt": "marks"})
    assert submitted.status_code == 202, submitted.text
    job_url = f"{backend.url}/v1/jobs/{submitted.json()['id']}"
    deadline = time.monotonic() + 10
    while (job := httpx.get(job_url).json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "completed", job
    assert 0 <= job["waited_s"] < 5, job
