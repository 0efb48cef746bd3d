"""Container healthcheck: exit 0 when the worker renewed its heartbeat file recently."""

import os
import sys
import time

from services.worker.config import WorkerSettings


def main() -> int:
    settings = WorkerSettings()
    try:
        age = time.time() - os.stat(settings.HEARTBEAT_FILE).st_mtime
    except OSError:
        sys.stderr.write("no heartbeat yet (model loading, or broker/Redis unreachable)\n")
        return 1
    if age > settings.HEARTBEAT_TTL:
        sys.stderr.write(f"last heartbeat {age:.0f} s ago\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
