#!/usr/bin/env bash
# Set up and run the demo stack (CPU demo fleet in Docker: echo + tiny transformers model) and
# print the answer to the original /generate example.
#   bash tools/demo.sh            up, with Docker (installed and started if missing)
#   bash tools/demo.sh --local    up, as host processes (Debian's redis-server and rabbitmq-server)
#   bash tools/demo.sh down [--local]
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV=.venv-demo EXTRAS=backend,worker,fleet
if [[ " $* " == *" --local "* ]]; then
  bash tools/setup/servers.sh
else
  bash tools/setup/docker.sh
  . tools/setup/build-env.sh
fi
bash tools/setup/python.sh
exec "$VENV/bin/python" -m tools.demo "$@"
