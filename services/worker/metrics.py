"""The worker's Prometheus metrics, served on WORKER_METRICS_PORT (0, the default: not served).

The backend's /metrics says what clients get, per queue; these say what each worker does, and
Prometheus tells workers apart by target: the jobs it holds against the jobs it can hold (one
saturated worker beside an idle one), the outcomes it stored, its model time and tokens. With
MODEL_BACKEND=vllm the same page carries vLLM's own `vllm:*` metrics (KV-cache use, requests
running and waiting in the engine, preemptions), as `vllm serve` exports them: the engine
registers them in the process's default registry, which is the one served here.

A small threaded HTTP server (wsgiref with prometheus_client's app) answers scrapes: the worker's
event loop does no HTTP, and a scrape never waits for it. A worker on another host than its
fleet's Prometheus serves the page over TLS and answers only clients with a certificate of the
fleet's CA (WORKER_METRICS_TLS; the fleet generator sets it up, links.py).
"""

from __future__ import annotations

import ssl
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from services.common.protocol import JobOutcome, JobStatus
from services.worker.config import WorkerSettings

# A client has this long to finish its TLS handshake, and then each read.
TLS_TIMEOUT_S = 10.0
# Model time, from a cached answer (ms) to a long generation on a large model (minutes).
_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

INFO = Gauge(
    "llm_wrap_worker_info",
    "This worker (always 1): its id, as `python -m tools.ops.status` lists it, and its backend",
    ["queue", "worker_id", "backend"],
)
CAPACITY = Gauge(
    "llm_wrap_worker_capacity", "Jobs the worker holds at once (its prefetch)", ["queue"]
)
HELD = Gauge("llm_wrap_worker_jobs_running", "Jobs the worker holds now", ["queue"])
OUTCOMES = Counter(
    "llm_wrap_worker_jobs_total",
    "Jobs the worker ended: completed, the error code (model, invalid, deadline, cancelled, "
    "rejected), or late (its outcome came after the job had ended: cancelled, or the backend's "
    "deadline first)",
    ["queue", "outcome"],
)
RUN_SECONDS = Histogram(
    "llm_wrap_worker_run_seconds",
    "Model time of each completed job",
    ["queue"],
    buckets=_SECONDS,
)
PROMPT_TOKENS = Counter(
    "llm_wrap_worker_prompt_tokens_total", "Prompt tokens of the jobs it completed", ["queue"]
)
OUTPUT_TOKENS = Counter(
    "llm_wrap_worker_output_tokens_total", "Tokens it generated for completed jobs", ["queue"]
)


class WorkerMetrics:
    """One worker's metric children, bound to its queue once (`labels()` locks on every call)."""

    def __init__(self, queue: str, worker_id: str, backend: str) -> None:
        INFO.labels(queue, worker_id, backend).set(1)
        self.capacity = CAPACITY.labels(queue)
        self.held = HELD.labels(queue)
        self._queue = queue
        self._run = RUN_SECONDS.labels(queue)
        self._prompt = PROMPT_TOKENS.labels(queue)
        self._output = OUTPUT_TOKENS.labels(queue)

    def stored(self, outcome: JobOutcome, kept: bool) -> None:
        """The worker wrote `outcome`; `kept`: it was the job's final word (first write wins)."""
        if not kept:
            label = "late"
        elif outcome.status is JobStatus.COMPLETED:
            label = "completed"
        else:
            label = outcome.code.value if outcome.code is not None else "error"
        OUTCOMES.labels(self._queue, label).inc()
        if outcome.status is not JobStatus.COMPLETED:
            return
        # The model did this work whether or not its answer was still awaited.
        if outcome.started_at is not None and outcome.finished_at is not None:
            self._run.observe(max(0.0, outcome.finished_at - outcome.started_at))
        if outcome.prompt_tokens:
            self._prompt.inc(outcome.prompt_tokens)
        if outcome.completion_tokens:
            self._output.inc(outcome.completion_tokens)


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base's name)
        """Scrapes are not logged."""


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per connection; over TLS, the handshake happens in that thread.

    prometheus_client's own server wraps its listening socket, so the handshake runs inside
    accept(): one client that connects and says nothing (a port scan) stops every scrape.
    """

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(TLS_TIMEOUT_S)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except OSError:  # no certificate, not TLS, or silent: that client only
            return
        with wrapped:
            super().finish_request(wrapped, client_address)


def serve(settings: WorkerSettings) -> tuple[WSGIServer, threading.Thread]:
    """Answer GET /metrics on every interface at WORKER_METRICS_PORT, like Prometheus'
    exporters; with WORKER_METRICS_TLS, over TLS to clients with a certificate of TLS_CA_FILE.
    OSError when the port is taken or a file cannot be read."""
    context = None
    if settings.WORKER_METRICS_TLS:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=settings.TLS_CA_FILE)
        context.load_cert_chain(settings.TLS_CERT_FILE, settings.TLS_KEY_FILE)
        context.verify_mode = ssl.CERT_REQUIRED
    server = make_server(
        "", settings.WORKER_METRICS_PORT, make_wsgi_app(), _Server, handler_class=_Handler
    )
    server.tls = context
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread
