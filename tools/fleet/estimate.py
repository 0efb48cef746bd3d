"""Will the model fit? Weights + KV cache per GPU, from the model directory's `config.json`.

A lower bound: activations and CUDA graphs need room too, so a model this says does not fit
surely fails to start (vLLM refuses when one `max_model_len` sequence does not fit its KV cache),
and one that barely fits is worth a warning. Weights are the size of the safetensors files, or
params from config.json x dtype bytes; KV cache = 2 x layers x kv_heads x head_dim x
max_model_len x dtype bytes; both are split across tensor (and pipeline) parallel GPUs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3
# Below this much budget left after weights + KV cache, activations and CUDA graphs may not fit.
HEADROOM_BYTES = 1 * GIB
# config.json is read defensively: a model directory is input like the spec. Real configs are a
# few KiB, nest a few levels, and hold no dimension anywhere near 2^40.
MAX_CONFIG_BYTES = 4 * 2**20
MAX_CONFIG_DEPTH = 32
MAX_DIMENSION = 2**40

_DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "float8": 1,
    "fp8": 1,
    "int8": 1,
}


class EstimateError(Exception):
    """config.json exists but cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from config.json and the weight files."""

    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    dtype_bytes: float
    kv_dtype_bytes: float
    weights_bytes: int
    weights_source: str

    def weights_per_gpu(self, tp: int, pp: int) -> float:
        return self.weights_bytes / (tp * pp)

    def kv_per_token_per_gpu(self, tp: int, pp: int) -> float:
        layers = math.ceil(self.layers / pp)
        kv_heads = max(1, math.ceil(self.kv_heads / tp))
        return 2 * layers * kv_heads * self.head_dim * self.kv_dtype_bytes

    def per_gpu(self, tp: int, pp: int, max_model_len: int) -> float:
        return self.weights_per_gpu(tp, pp) + self.kv_per_token_per_gpu(tp, pp) * max_model_len


def _dtype_bytes(name: object, default: float) -> float:
    if not isinstance(name, str) or name == "auto":
        return default
    key = name.lower().removeprefix("torch.")
    if key.startswith(("fp8", "float8")):
        return 1
    return _DTYPE_BYTES.get(key, default)


def _int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if value > MAX_DIMENSION:
                raise EstimateError(
                    f"config.json: {key} {str(value)[:20]}... is not a plausible size"
                )
            return value
    return None


def _bounded_int(text: str) -> int:
    """json's parse_int: a 5,000-digit number is no model dimension (and int() would refuse it)."""
    if len(text.lstrip("-")) > 20:
        raise ValueError(f"number {text[:20]}... is too large")
    return int(text)


def _depth_ok(text: str) -> bool:
    """Nesting depth counted on the text, before json's recursive parser meets it."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _read_config(config_path: Path) -> object:
    """Parse config.json; every way it can be unusable is an EstimateError (one line)."""
    if not config_path.exists():
        raise FileNotFoundError(config_path)
    if not config_path.is_file():
        # A FIFO or device would block the read; a directory is no config.
        raise EstimateError(f"{config_path} is not a regular file")
    with config_path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise EstimateError(f"{config_path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB")
    text = data.decode("utf-8")
    if not _depth_ok(text):
        raise EstimateError(f"{config_path} nests deeper than {MAX_CONFIG_DEPTH} levels")
    return json.loads(text, parse_int=_bounded_int)


def _params(cfg: dict[str, Any], layers: int, heads: int, kv_heads: int, head_dim: int) -> int:
    """Parameter count of a decoder-only transformer (gated MLP, optional experts)."""
    hidden = _int(cfg, "hidden_size", "d_model", "n_embd")
    vocab = _int(cfg, "vocab_size")
    inter = _int(cfg, "intermediate_size", "ffn_dim", "n_inner")
    if not (hidden and vocab):
        raise EstimateError("config.json lacks hidden_size or vocab_size")
    inter = inter or 4 * hidden
    experts = _int(cfg, "num_local_experts", "n_routed_experts", "num_experts") or 1
    expert_inter = _int(cfg, "moe_intermediate_size") or inter
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * (expert_inter * experts if experts > 1 else inter)
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * (attention + mlp)


def read_shape(model_dir: str, engine_args: dict[str, Any]) -> ModelShape | None:
    """The model's shape, or None when the directory has no config.json (render elsewhere)."""
    root = Path(model_dir)
    config_path = root / "config.json"
    try:
        raw = _read_config(config_path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise EstimateError(f"cannot read {config_path}: {e}") from e
    if not isinstance(raw, dict):
        raise EstimateError(f"{config_path} is not a JSON object")
    # Multimodal models keep the language model's shape under text_config.
    text = raw.get("text_config")
    cfg: dict[str, Any] = {**raw, **text} if isinstance(text, dict) else raw
    layers = _int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(cfg, "num_attention_heads", "n_head")
    if not (layers and heads):
        raise EstimateError(f"{config_path} lacks num_hidden_layers or num_attention_heads")
    kv_heads = _int(cfg, "num_key_value_heads", "n_head_kv") or heads
    hidden = _int(cfg, "hidden_size", "d_model", "n_embd")
    head_dim = _int(cfg, "head_dim") or (hidden // heads if hidden else 0)
    if not head_dim:
        raise EstimateError(f"{config_path} lacks head_dim and hidden_size")
    model_dtype = cfg.get("torch_dtype", cfg.get("dtype"))
    dtype = _dtype_bytes(engine_args.get("dtype"), _dtype_bytes(model_dtype, 2))
    kv_dtype = _dtype_bytes(engine_args.get("kv_cache_dtype"), dtype)
    files = sorted(root.glob("*.safetensors"))
    if files:
        weights = sum(f.stat().st_size for f in files)
        source = f"{len(files)} safetensors file{'s' if len(files) > 1 else ''}"
    else:
        quant = cfg.get("quantization_config")
        bits = quant.get("bits") if isinstance(quant, dict) else None
        usable = isinstance(bits, int) and not isinstance(bits, bool) and 0 < bits <= 64
        per_param = bits / 8 if usable and isinstance(bits, int) else dtype
        weights = int(_params(cfg, layers, heads, kv_heads, head_dim) * per_param)
        source = "parameters in config.json"
    return ModelShape(layers, heads, kv_heads, head_dim, dtype, kv_dtype, weights, source)


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def check_shape(at: str, shape: ModelShape, tp: int) -> list[str]:
    """Hard limits of tensor parallelism: heads must split evenly across the GPUs."""
    if shape.attention_heads % tp:
        return [f"{tp} does not divide the model's {shape.attention_heads} attention heads"]
    if shape.kv_heads >= tp and shape.kv_heads % tp:
        return [f"{tp} does not divide the model's {shape.kv_heads} key/value heads"]
    return []


def fit_message(
    shape: ModelShape,
    tp: int,
    pp: int,
    max_model_len: int,
    utilisation: float,
    gpu_bytes: int,
    gpu_name: str,
) -> tuple[str, str, bool] | None:
    """(field, message, fatal) when the model does not fit, or fits with too little headroom.

    fatal means it cannot start at all; otherwise the message is a warning.
    """
    budget = utilisation * gpu_bytes
    weights = shape.weights_per_gpu(tp, pp)
    kv_token = shape.kv_per_token_per_gpu(tp, pp)
    kv = kv_token * max_model_len
    need = weights + kv
    per = "per GPU" if tp * pp > 1 else "on its GPU"
    offer = (
        f"gpu_memory_utilisation {utilisation:g} x {gib(gpu_bytes)} ({gpu_name}) = {gib(budget)}"
    )
    if weights > budget:
        return (
            "gpus",
            f"weights alone ({shape.weights_source}) need {gib(weights)} {per} but "
            f"{offer}: {gib(weights - budget)} short; give it more GPUs or a quantised model",
            True,
        )
    if need > budget:
        fits = int((budget - weights) // kv_token)
        return (
            "max_model_len",
            f"weights {gib(weights)} + KV cache {gib(kv)} at max_model_len {max_model_len} need "
            f"{gib(need)} {per} but {offer}: {gib(need - budget)} short; lower max_model_len to "
            f"{fits} or less, raise gpu_memory_utilisation, or give it more GPUs",
            True,
        )
    if budget - need < HEADROOM_BYTES:
        return (
            "max_model_len",
            f"weights {gib(weights)} + KV cache {gib(kv)} need {gib(need)} {per} of the "
            f"{gib(budget)} budget, leaving {gib(budget - need)} for activations and CUDA "
            "graphs; the engine may fail to start",
            False,
        )
    return None
