"""Container healthcheck: exit 0 when this container's API answers GET /ready with 200."""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("API_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=3) as r:
            return 0 if r.status == 200 else 1
    except (urllib.error.URLError, OSError) as e:
        sys.stderr.write(f"not ready: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
