"""One logging setup for both services: timestamped lines on stderr, level from LOG_LEVEL."""

import logging
import os


def setup_logging() -> None:
    root = logging.getLogger("services")
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    root.propagate = False


def describe(e: BaseException) -> str:
    """An exception for a log line: its type and message. (redis-py 8's exceptions have a repr
    without the message, e.g. `network:ConnectionError`.)"""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
