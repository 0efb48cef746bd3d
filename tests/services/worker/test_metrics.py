"""The worker's own /metrics (WORKER_METRICS_PORT), scraped from a real worker process serving
real jobs: what Prometheus reads of each worker beside the backend's per-queue figures."""

from __future__ import annotations

import socket
import threading

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.utils.wait import wait_until
from tools.local.servers import free_port
from tools.local.stack import Stack


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the worker's page, keyed by series name and labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_a_worker_exports_its_load_outcomes_and_tokens(stack: Stack, queue: str) -> None:
    port = free_port()
    worker = stack.worker(
        queue, WORKER_METRICS_PORT=port, WORKER_CONCURRENCY=3, ECHO_TOKEN_DELAY_MS=150
    )
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url
    before = scrape(port)
    assert value(before, "llm_wrap_worker_capacity", queue=queue) == 3
    assert value(before, "llm_wrap_worker_jobs_running", queue=queue) == 0
    [worker_id] = [
        dict(labels)["worker_id"]
        for (name, labels) in before
        if name == "llm_wrap_worker_info" and dict(labels)["queue"] == queue
    ]
    assert worker_id.startswith(f"{queue}-") and worker_id in worker.output()
    assert value(before, "llm_wrap_worker_info", queue=queue, worker_id=worker_id, backend="echo")
    assert value(before, "process_resident_memory_bytes") is not None

    # Two slow jobs at once: the page shows them held while they run.
    answers: list[int] = []

    def ask(text: str) -> None:
        r = httpx.post(url + "/generate", json={"content": text}, timeout=30)
        answers.append(r.status_code)

    threads = [threading.Thread(target=ask, args=(t,)) for t in ("a b c d e f", "g h i j k l")]
    for t in threads:
        t.start()
    wait_until(
        lambda: value(scrape(port), "llm_wrap_worker_jobs_running", queue=queue) == 2,
        10,
        "both jobs held by the worker",
    )
    for t in threads:
        t.join(30)
    assert answers == [200, 200]

    after = scrape(port)
    assert value(after, "llm_wrap_worker_jobs_running", queue=queue) == 0
    assert value(after, "llm_wrap_worker_jobs_total", queue=queue, outcome="completed") == 2
    assert value(after, "llm_wrap_worker_output_tokens_total", queue=queue) == 12
    assert value(after, "llm_wrap_worker_prompt_tokens_total", queue=queue) == 12
    assert value(after, "llm_wrap_worker_run_seconds_count", queue=queue) == 2
    # Six tokens at 150 ms each: the model time is counted, not the time in the queue.
    run_sum = value(after, "llm_wrap_worker_run_seconds_sum", queue=queue)
    assert run_sum is not None and 2 * 0.75 < run_sum < 2 * 5


def test_an_answer_after_the_backends_deadline_counts_as_late(stack: Stack, queue: str) -> None:
    """The backend gave up first (504): the worker's answer was no longer the job's word."""
    port = free_port()
    stack.worker(queue, WORKER_METRICS_PORT=port, ECHO_TOKEN_DELAY_MS=400)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=1).url
    r = httpx.post(url + "/generate", json={"content": "a b c d e f"}, timeout=30)
    assert r.status_code == 504, r.text
    wait_until(
        lambda: value(scrape(port), "llm_wrap_worker_jobs_total", queue=queue, outcome="late") == 1,
        15,
        "the late outcome counted",
    )
    assert value(scrape(port), "llm_wrap_worker_jobs_total", queue=queue, outcome="completed") is (
        None
    )


def test_a_taken_metrics_port_stops_the_worker_naming_it(stack: Stack, queue: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = stack.worker(queue, wait=False, WORKER_METRICS_PORT=port)
        assert worker.proc is not None and worker.proc.wait(30) == 2
    assert f"invalid setting WORKER_METRICS_PORT: cannot listen on {port}" in worker.output()
