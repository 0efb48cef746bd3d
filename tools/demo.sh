#!/usr/bin/env bash
# Set up and run the stack locally with the echo model, and print the answer to the original
# /generate example. `bash tools/demo.sh down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup/servers.sh
bash tools/setup/python.sh
exec .venv/bin/python -m tools.local.demo "${@:-up}"
