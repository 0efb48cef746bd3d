"""Place `gpus: auto` models on the inventory's free GPUs.

Largest requests go first, each on the lowest aligned block of consecutive GPUs (a TP-4 model on
0-3 or 4-7, never 2-5), the way a buddy allocator keeps room for the next large model: on
NVLink/NVSwitch boxes neighbouring indices also tend to share the fastest links. GPUs with less
memory than the model needs (when its size is known) are skipped. Deterministic: same spec and
inventory, same placement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tools.fleet.estimate import gib
from tools.fleet.fields import GpuId
from tools.fleet.inventory import Gpu, Inventory
from tools.fleet.problems import Problem
from tools.fleet.spec import ModelSpec

NO_INVENTORY = (
    "'auto' needs a GPU inventory: pass --inventory FILE (save one on the GPU host with "
    "`python -m tools.fleet inventory > gpus.csv`)"
)


def _pick(free: Sequence[Gpu], count: int) -> list[Gpu]:
    """Lowest aligned run of `count` consecutive indices, else any run, else the lowest ones."""
    by_index = {g.index: g for g in free}
    starts = sorted(by_index)

    def run(start: int) -> list[Gpu] | None:
        if all(start + k in by_index for k in range(count)):
            return [by_index[start + k] for k in range(count)]
        return None

    for aligned_only in (True, False):
        for start in starts:
            if aligned_only and start % count:
                continue
            found = run(start)
            if found:
                return found
    return [by_index[i] for i in starts[:count]]


def place(
    requests: Mapping[int, int],
    taken: Sequence[GpuId],
    inventory: Inventory | None,
    models: Mapping[int, ModelSpec],
    need_bytes: Mapping[int, float] | None = None,
    use_uuids: bool = False,
) -> tuple[dict[int, list[GpuId]], list[Problem]]:
    """Give each model index in `requests` its count of GPUs not in `taken`.

    :param need_bytes: per-GPU memory each model needs, where known; smaller GPUs are skipped.
    :param use_uuids: answer with GPU UUIDs (when the rest of the fleet lists UUIDs).
    """
    placed: dict[int, list[GpuId]] = {}
    if not requests:
        return placed, []
    if inventory is None:
        return placed, [Problem(f"models[{i}].gpus", NO_INVENTORY) for i in sorted(requests)]
    problems: list[Problem] = []
    free = [g for g in inventory.gpus if g.index not in taken and g.uuid not in taken]
    for i in sorted(requests, key=lambda k: (-requests[k], k)):
        count, need = requests[i], (need_bytes or {}).get(i)
        budget = models[i].gpu_memory_utilisation
        usable = [g for g in free if need is None or g.memory_mib * 2**20 * budget >= need]
        if len(usable) < count:
            detail = f"{len(free)} of {len(inventory.gpus)} are free"
            if need is not None and len(usable) < len(free):
                detail += f", {len(usable)} of them with the {gib(need)} it needs per GPU"
            problems.append(
                Problem(
                    f"models[{i}].gpus",
                    f"auto placement needs {count} GPU{'s' if count > 1 else ''} but only {detail}",
                )
            )
            continue
        chosen = _pick(usable, count)
        placed[i] = [g.uuid if use_uuids else g.index for g in chosen]
        taken_now = {g.index for g in chosen}
        free = [g for g in free if g.index not in taken_now]
    return placed, problems
