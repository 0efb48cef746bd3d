"""The worker's own /metrics (WORKER_METRICS_PORT), scraped from a real worker process serving
real jobs: what Prometheus reads of each worker beside the backend's per-queue figures."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.utils.wait import wait_until
from tools.local.servers import free_port
from tools.local.stack import Stack
from tools.local.tls import make_certs


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


def test_an_outcome_after_the_job_ended_elsewhere_counts_as_late(stack: Stack, queue: str) -> None:
    """A client cancelled the running job: the backend recorded its end at once, so the
    worker's own "cancelled" outcome, written when it stopped, was no longer the job's word."""
    port = free_port()
    stack.worker(queue, WORKER_METRICS_PORT=port, ECHO_TOKEN_DELAY_MS=300)
    url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=30).url
    body = {"model": queue, "prompt": "a b c d e f g h i j", "max_tokens": 10}
    job = httpx.post(url + "/v1/jobs", json=body, timeout=10)
    assert job.status_code == 202, job.text
    wait_until(
        lambda: value(scrape(port), "llm_wrap_worker_jobs_running", queue=queue) == 1,
        10,
        "the job running",
    )
    assert httpx.delete(f"{url}/v1/jobs/{job.json()['id']}", timeout=10).status_code == 200
    wait_until(
        lambda: value(scrape(port), "llm_wrap_worker_jobs_total", queue=queue, outcome="late") == 1,
        15,
        "the late outcome counted",
    )
    page = scrape(port)
    for outcome in ("completed", "cancelled"):
        assert value(page, "llm_wrap_worker_jobs_total", queue=queue, outcome=outcome) is None


def test_a_taken_metrics_port_stops_the_worker_naming_it(stack: Stack, queue: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = stack.worker(queue, wait=False, WORKER_METRICS_PORT=port)
        assert worker.proc is not None and worker.proc.wait(30) == 2
    assert f"invalid setting WORKER_METRICS_PORT: cannot listen on {port}" in worker.output()


def test_over_tls_the_page_answers_clients_of_the_ca_only(
    stack: Stack, queue: str, tmp_path: Path
) -> None:
    """WORKER_METRICS_TLS, as a worker on another host than Prometheus serves it: the host's
    certificate (naming its address, here localhost), a client certificate of the CA required."""
    files = make_certs(tmp_path)
    port = free_port()
    stack.worker(
        queue,
        WORKER_METRICS_PORT=port,
        WORKER_METRICS_TLS="true",
        TLS_CA_FILE=files.ca,
        TLS_CERT_FILE=files.client_cert,
        TLS_KEY_FILE=files.client_key,
    )
    url = f"https://localhost:{port}/metrics"
    trusted = ssl.create_default_context(cafile=str(files.ca))
    trusted.load_cert_chain(files.client_cert, files.client_key)
    # A client that connects and says nothing (a port scan) holds up no one else's scrape.
    with socket.create_connection(("127.0.0.1", port)):
        page = httpx.get(url, verify=trusted, timeout=5)
    assert page.status_code == 200 and f'llm_wrap_worker_capacity{{queue="{queue}"}}' in page.text
    # No client certificate: the handshake fails (TLS 1.3 tells on the first read).
    with pytest.raises(httpx.TransportError):
        httpx.get(url, verify=ssl.create_default_context(cafile=str(files.ca)), timeout=5)
    # Plain HTTP gets no page either.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://localhost:{port}/metrics", timeout=5)
    assert httpx.get(url, verify=trusted, timeout=5).status_code == 200, "still serving"


def test_tls_without_its_files_stops_the_worker(stack: Stack, queue: str) -> None:
    worker = stack.worker(
        queue, wait=False, WORKER_METRICS_PORT=free_port(), WORKER_METRICS_TLS="true"
    )
    assert worker.proc is not None and worker.proc.wait(30) == 2
    assert "WORKER_METRICS_TLS needs TLS_CERT_FILE" in worker.output()
