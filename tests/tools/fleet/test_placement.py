"""`gpus: auto`: largest first, aligned blocks, never a GPU given twice, clear refusals."""

from __future__ import annotations

from pathlib import Path

from tools.fleet.inventory import parse, read_file
from tools.fleet.placement import _pick, place
from tools.fleet.spec import ModelSpec

DATA = Path(__file__).parent / "data"
INV = read_file(DATA / "gpus-8xh100.csv")


def models(n: int) -> dict[int, ModelSpec]:
    return {i: ModelSpec(name=f"m{i}", path="/m", gpus="auto") for i in range(n)}


def test_aligned_blocks_largest_first() -> None:
    placed, problems = place({0: 1, 1: 4, 2: 2}, [], INV, models(3))
    assert problems == []
    assert placed == {1: [0, 1, 2, 3], 2: [4, 5], 0: [6]}


def test_skips_taken_gpus_and_keeps_alignment() -> None:
    placed, _ = place({0: 2, 1: 2}, [1], INV, models(2))
    assert placed == {0: [2, 3], 1: [4, 5]}


def test_falls_back_to_unaligned_then_scattered() -> None:
    free = [g for g in INV.gpus if g.index in (1, 2, 5, 7)]
    assert [g.index for g in _pick(free, 2)] == [1, 2]
    assert [g.index for g in _pick([g for g in INV.gpus if g.index in (1, 3, 5)], 2)] == [1, 3]


def test_answers_with_uuids_when_the_fleet_uses_them() -> None:
    placed, _ = place({0: 1}, [INV.gpus[0].uuid], INV, models(1), use_uuids=True)
    assert placed == {0: [INV.gpus[1].uuid]}


def test_not_enough_gpus() -> None:
    placed, problems = place({0: 4, 1: 4, 2: 2}, [], INV, models(3))
    assert placed == {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}
    assert [str(p) for p in problems] == [
        "models[2].gpus: auto placement needs 2 GPUs but only 0 of 8 are free"
    ]


def test_memory_filter() -> None:
    inv = parse("0, GPU-a, A10, 22731\n1, GPU-b, H100, 81559\n2, GPU-c, A10, 22731\n", "mixed.csv")
    placed, _ = place({0: 1}, [], inv, models(1), need_bytes={0: 40 * 2**30})
    assert placed == {0: [1]}
    _, problems = place({0: 2}, [], inv, models(1), need_bytes={0: 40 * 2**30})
    assert [str(p) for p in problems] == [
        "models[0].gpus: auto placement needs 2 GPUs but only 3 of 3 are free, "
        "1 of them with the 40.0 GiB it needs per GPU"
    ]


def test_auto_without_inventory_is_a_clear_error(write_fleet, cli) -> None:
    path = write_fleet(
        """
        models:
          - {name: a, path: /m/a, gpus: auto, gpu_count: 2}
          - {name: b, path: /m/b, gpus: [0]}
        """
    )
    run = cli("validate", path)
    assert run.code == 2
    assert run.lines == [
        "models[0].gpus: 'auto' needs a GPU inventory: pass --inventory FILE (save one on the "
        "GPU host with `python -m tools.fleet inventory > gpus.csv`)"
    ]


def test_auto_renders_on_free_gpus(write_fleet, cli, tmp_path, load_compose, read_env) -> None:
    path = write_fleet(
        """
        models:
          - {name: small, path: /m/s, gpus: auto}
          - {name: pinned, path: /m/p, gpus: [0, 1]}
          - {name: big, path: /m/b, gpus: auto, tensor_parallel_size: 4}
        """
    )
    out = tmp_path / "out"
    run = cli("render", path, "--out", out, "--inventory", DATA / "gpus-8xh100.csv")
    assert run.code == 0, run.err
    services = load_compose(out)["services"]
    ids = {
        name: svc["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        for name, svc in services.items()
        if name.startswith("worker-")
    }
    assert ids == {
        "worker-small": ["2"],
        "worker-pinned": ["0", "1"],
        "worker-big": ["4", "5", "6", "7"],
    }
    env = read_env(out / "env" / "worker-big.env")
    assert env["NVIDIA_VISIBLE_DEVICES"] == "4,5,6,7" and env["TENSOR_PARALLEL_SIZE"] == "4"
    assert "(auto)" in cli("validate", path, "--inventory", DATA / "gpus-8xh100.csv").out
