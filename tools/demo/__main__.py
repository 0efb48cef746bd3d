"""`python -m tools.demo [up|down] [--local] [--port N]`: see the package docstring."""

import argparse
import os
import sys

from tools.demo import compose, local


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("action", choices=["up", "down"], nargs="?", default="up")
    parser.add_argument("--local", action="store_true", help="host processes instead of Docker")
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", 8000)))
    args = parser.parse_args()
    mode = local if args.local else compose
    code: int = mode.up(args.port) if args.action == "up" else mode.down()
    return code


if __name__ == "__main__":
    sys.exit(main())
