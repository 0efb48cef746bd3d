#!/usr/bin/env bash
# Idempotent: the project venv (.venv) with every extra the tests use. Reinstalls only when
# pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.llm-wrap-installed"
want=$(sha256sum pyproject.toml tools/setup/python.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup/python] installing the project into $VENV" >&2
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[backend,worker,fleet,transformers,dev]'
  # The original's SDK, to test its client unchanged; its declared deps (celery, langchain, ...)
  # are not needed by the client module.
  "$VENV/bin/pip" install -q --no-deps protollm-sdk==1.2.0
  echo "$want" > "$stamp"
fi
