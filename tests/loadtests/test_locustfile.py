"""`locust -f loadtests/locustfile.py` against a real backend and echo worker: headless, in
distributed mode, and against a server without OpenAI's API (/v1 skipped with a note)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tools.local.servers import free_port
from tools.local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = "loadtests/locustfile.py"
STREAM = "/v1/chat/completions stream"


def locust_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_WRAP_", "LOCUST_"))}
    env.update(extra)
    return env


def locust(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, *args],
        cwd=ROOT,
        env=locust_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary_rows(output: str) -> dict[str, list[str]]:
    """The LLM summary's first table, by endpoint name (model suffix dropped)."""
    lines = output.split("LLM summary", 1)[1].split("Errors by status", 1)[0].splitlines()[3:]
    rows = {}
    for line in filter(None, (x.strip() for x in lines)):
        name, _, rest = line.partition(" @") if " @" in line else line.partition("  ")
        cells = rest.split()
        rows[name.strip()] = cells[1:] if " @" in line else cells
    return rows


@pytest.fixture
def echo_url(stack: Stack, queue: str) -> str:
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=5, MODEL_NAME="echo")
    return stack.backend(QUEUE_NAME=queue).url


def test_headless_run_prints_the_llm_summary(echo_url: str) -> None:
    out = locust("--headless", "-u", "4", "-r", "4", "-t", "5s", "--host", echo_url)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    rows = summary_rows(text)
    assert set(rows) == {"/generate", "/chat_completion", STREAM, "all"}, text
    for cells in rows.values():
        assert int(cells[0]) > 0 and float(cells[1]) == 0.0, text  # requests, none failed
    ttft = rows[STREAM][5]
    assert ttft != "-" and int(ttft) > 0, text
    assert rows["/generate"][5] == "-"  # no TTFT for a whole answer
    # Locust's own table has the metric entries beside the requests.
    for kind in ("TTFT", "ITL", "QUEUE", "GEN", "TOK/S"):
        assert f"\n{kind} " in text, text


def test_distributed_run_summarises_on_the_master_with_options_from_it(
    stack: Stack, queue: str, tmp_path: Path
) -> None:
    """Options given to the master (the API key, max tokens) reach its worker; the master's
    summary holds the worker's requests and metrics."""
    stack.worker(queue, ECHO_TOKEN_DELAY_MS=5, MODEL_NAME="echo")
    url = stack.backend(QUEUE_NAME=queue, API_KEYS="sekrit").url
    port = str(free_port())
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker"]
            + ["--master-port", port],
            cwd=ROOT,
            env=locust_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            out = locust(
                *("--master", "--master-bind-port", port, "--expect-workers", "1"),
                *("--headless", "-u", "3", "-r", "3", "-t", "5s", "--host", url),
                *("--llm-max-tokens", "8"),
                LLM_WRAP_API_KEY="sekrit",
            )
        finally:
            worker.wait(timeout=30)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text + (tmp_path / "worker.log").read_text()
    rows = summary_rows(text)
    assert int(rows["all"][0]) > 0 and rows[STREAM][5] != "-", text
    assert "max tokens 8" in (tmp_path / "worker.log").read_text()


class OnlyGenerate(BaseHTTPRequestHandler):
    """A server with the original /generate and nothing else (no /v1)."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(200, {"content": body["content"]} if self.path == "/generate" else None)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(404, None)

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body if status == 200 else {"detail": "Not Found"}).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def generate_only() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OnlyGenerate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_missing_v1_is_skipped_with_a_note(generate_only: str) -> None:
    out = locust(
        *("--headless", "-u", "3", "-r", "3", "-t", "3s", "--host", generate_only),
        *("GenerateUser", "OpenAIChatUser"),
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "no OpenAI API (/v1) here" in text and "user is skipped" in text, text
    rows = summary_rows(text)
    assert set(rows) == {"/generate", "all"} and int(rows["/generate"][0]) > 0, text
    assert "Traceback" not in text, text
