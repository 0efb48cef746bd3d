"""Memory estimate: weights + KV cache per GPU against gpu_memory_utilisation x GPU memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.fleet.estimate import GIB, fit_message, read_shape

DATA = Path(__file__).parent / "data"
LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
A10 = "0, GPU-a10-0, NVIDIA A10, 22731\n1, GPU-a10-1, NVIDIA A10, 22731\n"


def model_dir(tmp_path: Path, config: dict, weights: list[int] = (), name: str = "m") -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "config.json").write_text(json.dumps(config))
    for i, size in enumerate(weights):
        with open(root / f"model-{i:05d}.safetensors", "wb") as handle:
            handle.truncate(size)  # sparse: the size is what counts
    return root


def test_params_from_config(tmp_path) -> None:
    shape = read_shape(str(model_dir(tmp_path, LLAMA3_8B)), {})
    assert shape is not None and shape.weights_source == "parameters in config.json"
    assert shape.weights_bytes / 2 == pytest.approx(8.03e9, rel=0.01)
    # 2 x 32 layers x 8 kv heads x 128 head_dim x 2 bytes
    assert shape.kv_per_token_per_gpu(1, 1) == 131072
    assert shape.kv_per_token_per_gpu(2, 1) == 65536
    assert shape.kv_per_token_per_gpu(16, 1) == 16384  # fewer kv heads than GPUs: replicated
    assert shape.kv_per_token_per_gpu(1, 2) == 65536


def test_safetensors_sizes_win_and_dtypes(tmp_path) -> None:
    shape = read_shape(
        str(model_dir(tmp_path, LLAMA3_8B, [5 * GIB, 3 * GIB])), {"kv_cache_dtype": "fp8"}
    )
    assert shape is not None
    assert shape.weights_bytes == 8 * GIB and shape.weights_source == "2 safetensors files"
    assert shape.kv_per_token_per_gpu(1, 1) == 65536
    shape = read_shape(
        str(model_dir(tmp_path, {**LLAMA3_8B, "torch_dtype": "float32"}, name="f32")), {}
    )
    assert shape is not None and shape.dtype_bytes == 4


def test_no_config_is_no_estimate(tmp_path) -> None:
    assert read_shape(str(tmp_path), {}) is None
    assert read_shape(str(tmp_path / "absent"), {}) is None


def test_fit_messages(tmp_path) -> None:
    shape = read_shape(str(model_dir(tmp_path, LLAMA3_8B)), {})
    assert shape is not None
    a10 = 22731 * 2**20
    assert fit_message(shape, 1, 1, 8192, 0.9, a10, "A10") is None
    field, text, fatal = fit_message(shape, 1, 1, 65536, 0.9, a10, "NVIDIA A10")
    assert field == "max_model_len" and fatal
    assert text.startswith(
        "weights 15.0 GiB + KV cache 8.0 GiB at max_model_len 65536 need 23.0 GiB on its GPU but "
        "gpu_memory_utilisation 0.9 x 22.2 GiB (NVIDIA A10) = 20.0 GiB: 3.0 GiB short; lower "
        "max_model_len to "
    )
    field, text, fatal = fit_message(shape, 1, 1, 8192, 0.5, a10, "A10")
    assert (
        field == "gpus"
        and fatal
        and "weights alone (parameters in config.json) need 15.0 GiB" in text
    )
    field, text, fatal = fit_message(shape, 1, 1, 36000, 0.9, a10, "A10")
    assert not fatal and "leaving" in text


def fleet_yaml(path: Path, **model) -> str:
    fields = ", ".join(f"{k}: {json.dumps(v)}" for k, v in model.items())
    return f"models:\n  - {{name: m, path: {path}, {fields}}}\n"


def test_render_refuses_what_cannot_fit(tmp_path, write_fleet, cli) -> None:
    root = model_dir(tmp_path, LLAMA3_8B)
    inv = tmp_path / "a10.csv"
    inv.write_text(A10)
    spec = write_fleet(fleet_yaml(root, gpus=[0], max_model_len=65536))
    run = cli("render", spec, "--out", tmp_path / "out", "--inventory", inv)
    assert run.code == 2 and not (tmp_path / "out").exists()
    [line] = run.lines
    assert line.startswith("models[0].max_model_len: weights 15.0 GiB + KV cache 8.0 GiB")
    assert "3.0 GiB short" in line
    # Two GPUs halve both: it fits.
    spec = write_fleet(fleet_yaml(root, gpus=[0, 1], max_model_len=65536))
    assert cli("validate", spec, "--inventory", inv).code == 0


def test_memory_check_warn_and_off(tmp_path, write_fleet, cli) -> None:
    root = model_dir(tmp_path, LLAMA3_8B)
    inv = tmp_path / "a10.csv"
    inv.write_text(A10)
    text = fleet_yaml(root, gpus=[0], max_model_len=65536)
    run = cli("validate", write_fleet("memory_check: warn\n" + text), "--inventory", inv)
    assert run.code == 0 and run.lines[0].startswith("warning: models[0].max_model_len: weights")
    run = cli("validate", write_fleet("memory_check: off\n" + text), "--inventory", inv)
    assert run.code == 0 and run.err == ""


def test_tensor_parallel_must_divide_heads(tmp_path, write_fleet, cli) -> None:
    root = model_dir(tmp_path, LLAMA3_8B)
    run = cli("validate", write_fleet(fleet_yaml(root, gpus=[0, 1, 2])))
    assert run.lines == [
        "models[0].tensor_parallel_size: 3 does not divide the model's 32 attention heads"
    ]


def test_unreadable_config_is_a_warning(tmp_path, write_fleet, cli) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    (root / "config.json").write_text("{not json")
    run = cli("validate", write_fleet(fleet_yaml(root, gpus=[0])))
    assert run.code == 0
    assert run.lines[0].startswith(f"warning: models[0].path: cannot read {root}/config.json")


def test_auto_placement_skips_gpus_too_small(tmp_path, write_fleet, cli) -> None:
    root = model_dir(tmp_path, LLAMA3_8B)
    inv = tmp_path / "mixed.csv"
    inv.write_text(
        "0, GPU-a, NVIDIA A10, 22731\n1, GPU-b, NVIDIA L4, 23034\n2, GPU-c, NVIDIA H100, 81559\n"
    )
    run = cli(
        "validate",
        write_fleet(fleet_yaml(root, gpus="auto", max_model_len=65536)),
        "--inventory",
        inv,
    )
    assert run.code == 0, run.err
    assert run.out.splitlines()[1].split()[-2:] == ["2", "(auto)"]
