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
