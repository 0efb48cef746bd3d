"""One logging setup for both services: timestamped lines on stderr, level from LOG_LEVEL."""

import logging


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger("services")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


def describe(e: BaseException) -> str:
    """An exception for a log line: its type and message. (redis-py 8's exceptions have a repr
    without the message, e.g. `network:ConnectionError`.)"""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
