#!/usr/bin/env bash
# The test command: installs what the tests need (idempotently), then runs pytest.
# Extra arguments go to pytest, e.g. `bash tools/test.sh tests/services -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup/servers.sh
bash tools/setup/python.sh
bash tools/setup/vllm.sh
bash tools/setup/docker.sh
. tools/setup/build-env.sh
export PATH="$PWD/.venv/bin:$PATH"  # tools installed in the venv (hadolint, shellcheck)
exec pytest -ra "$@"
