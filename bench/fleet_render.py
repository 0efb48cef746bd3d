"""Benchmark: render a 64-model, 512-GPU fleet (target: well under 1 s).

    .venv/bin/python bench/fleet_render.py [--models 64] [--gpus-per-model 8] [--runs 20]

Half the models are pinned to explicit GPUs and half use `gpus: auto` (placed from a 512-GPU
inventory), so validation, placement, templating and writing files are all timed. Prints the
times; it never asserts on them (timings belong in benchmarks, not tests).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.fleet.inventory import parse  # noqa: E402
from tools.fleet.render import render  # noqa: E402


def fleet(models: int, per_model: int) -> dict[str, object]:
    """Even models pinned to the low GPU indices, odd ones `auto` (placed on the high ones)."""
    specs = []
    for i in range(models):
        model: dict[str, object] = {
            "name": f"model-{i:03d}",
            "path": f"/data/models/model-{i:03d}",
            "max_model_len": 8192,
            "engine_args": {"enable_prefix_caching": True},
            "env": {"HF_HUB_OFFLINE": "1"},
        }
        if i % 2 == 0:
            start = (i // 2) * per_model
            model["gpus"] = list(range(start, start + per_model))
        else:
            model["gpus"], model["gpu_count"] = "auto", per_model
        specs.append(model)
    return {"name": "bench", "models": specs}


def inventory_csv(gpus: int) -> str:
    return "".join(
        f"{i}, GPU-{i:08x}-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559\n"
        for i in range(gpus)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--gpus-per-model", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    total_gpus = args.models * args.gpus_per_model
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = root / "fleet.yaml"
        spec.write_text(yaml.safe_dump(fleet(args.models, args.gpus_per_model), sort_keys=False))
        saved = root / "gpus.csv"
        saved.write_text(inventory_csv(total_gpus))
        inventory = parse(saved.read_text(), str(saved))
        times = []
        for run in range(args.runs):
            out = root / f"out-{run}"
            start = time.perf_counter()
            result = render(spec, out, inventory)
            times.append(time.perf_counter() - start)
        warm = times[1:] or times
        files = len(list((root / "out-0").rglob("*.env"))) + 1
        start = time.perf_counter()
        cli = [sys.executable, "-m", "tools.fleet", "render", str(spec), "--out", str(root / "cli")]
        subprocess.run([*cli, "--inventory", str(saved)], check=True, capture_output=True, cwd=REPO)
        whole = time.perf_counter() - start
        sys.stdout.write(
            f"{args.models} models, {total_gpus} GPUs, {len(result.services)} services, "
            f"{files} files. In-process render (validate, place, template, write): "
            f"first {times[0] * 1000:.1f} ms, median {statistics.median(warm) * 1000:.1f} ms, "
            f"max {max(warm) * 1000:.1f} ms over {len(warm)} runs. Whole CLI process "
            f"(interpreter start and imports included): {whole * 1000:.0f} ms. Target: < 1000 ms.\n"
        )


if __name__ == "__main__":
    main()
