"""The original protollm-api README's /generate example, and waiting for the stack to answer it."""

from __future__ import annotations

import time

import httpx

EXAMPLE = {
    "job_id": "12345",
    "meta": {
        "temperature": 0.5,
        "tokens_limit": 1000,
        "stop_words": ["stop"],
        "model": "gpt-model",
    },
    "content": "What is AI?",
}


def ask(url: str, timeout: float = 120) -> httpx.Response | None:
    """POST the example until it is answered 200 (the stack may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.post(url + "/generate", json=EXAMPLE, timeout=30)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)
