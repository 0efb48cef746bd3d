"""From FLEET.yaml to a checked fleet with every model's GPUs decided, or every problem.

The order matters only for what each step can see: schema, then rules within and across
models, the inventory, `auto` placement, and last the memory estimate (which needs the GPUs).
Every step runs on whatever parsed, so one run reports all problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tools.fleet import checks, estimate
from tools.fleet.fields import GpuId
from tools.fleet.inventory import Inventory
from tools.fleet.load import Loaded, load
from tools.fleet.placement import place
from tools.fleet.problems import FleetError, Problem, errors
from tools.fleet.spec import FleetSpec, ModelSpec


@dataclass
class Fleet:
    """A valid spec, the GPUs of each model (in spec order) and the warnings found on the way."""

    spec: FleetSpec
    devices: list[list[GpuId]]
    warnings: list[Problem] = field(default_factory=list)


def _model_index(problem: Problem) -> int:
    match = re.match(r"^models\[(\d+)\]", problem.path)
    return int(match.group(1)) if match else -1


def _shapes(loaded: Loaded, problems: list[Problem]) -> dict[int, estimate.ModelShape]:
    """Shapes of the vLLM models whose directory is readable here (rendering may run elsewhere)."""
    shapes = {}
    for i, m in loaded.models.items():
        if m.backend != "vllm" or m.path is None:
            continue
        try:
            shape = estimate.read_shape(m.path, m.engine_args)
        except estimate.EstimateError as e:
            problems.append(Problem(f"models[{i}].path", f"{e}; memory not checked", True))
            continue
        except OSError:
            continue
        if shape is not None:
            shapes[i] = shape
            for text in estimate.check_shape(f"models[{i}]", shape, checks.tensor_parallel(m)):
                problems.append(Problem(f"models[{i}].tensor_parallel_size", text))
    return shapes


def _fit(
    i: int,
    m: ModelSpec,
    shape: estimate.ModelShape,
    devices: list[GpuId],
    inventory: Inventory,
    mode: str,
) -> list[Problem]:
    gpus = [g for g in (inventory.find(d) for d in devices) if g is not None]
    if not gpus or len(gpus) != len(devices):
        return []
    smallest = min(gpus, key=lambda g: g.memory_mib)
    found = estimate.fit_message(
        shape,
        checks.tensor_parallel(m),
        checks.pipeline_size(m),
        m.max_model_len,
        m.gpu_memory_utilisation,
        smallest.memory_mib * 2**20,
        smallest.name,
    )
    if found is None:
        return []
    where, message, fatal = found
    return [Problem(f"models[{i}].{where}", message, warning=not fatal or mode == "warn")]


def build(path: Path, inventory: Inventory | None = None) -> Fleet:
    """Check the fleet at `path`; raise FleetError listing every problem when any is an error."""
    loaded = load(path)
    problems = list(loaded.problems)
    models = loaded.models
    head = checks.head_of(loaded.settings)
    for i, m in models.items():
        problems += checks.check_model(i, m)
    problems += checks.check_models(models, head)
    if loaded.settings is not None:
        problems += checks.check_ports(loaded.settings)
        problems += checks.check_hosts(loaded.settings, models)
    if inventory is not None:
        problems += checks.check_inventory(models, inventory, head)
    mode = loaded.settings.memory_check if loaded.settings else "error"
    shapes = _shapes(loaded, problems) if mode != "off" else {}

    explicit = {i: m.gpus for i, m in models.items() if isinstance(m.gpus, list)}
    # `auto` places on the first host, whose inventory this is: only its GPUs are taken.
    taken = [
        gpu for i, ids in explicit.items() for gpu in ids if checks.host_of(models[i], head) == head
    ]
    requests = {
        i: checks.gpu_count(m)
        for i, m in models.items()
        if m.gpus == "auto" and checks.host_of(m, head) == head
    }
    # Placement skips GPUs too small for the model only when that would be an error anyway.
    needs = {
        i: shapes[i].per_gpu(
            checks.tensor_parallel(models[i]),
            checks.pipeline_size(models[i]),
            models[i].max_model_len,
        )
        for i in requests
        if i in shapes and mode == "error"
    }
    use_uuids = any(isinstance(g, str) for g in taken)
    placed, placement_problems = place(requests, taken, inventory, models, needs, use_uuids)
    problems += placement_problems
    devices = {**explicit, **placed}
    if inventory is not None:
        for i, shape in shapes.items():
            if i in devices and checks.host_of(models[i], head) == head:
                problems += _fit(i, models[i], shape, devices[i], inventory, mode)

    problems.sort(key=_model_index)
    if errors(problems) or loaded.spec is None:
        raise FleetError(problems)
    return Fleet(
        loaded.spec,
        [devices.get(i, []) for i in range(len(loaded.spec.models))],
        [p for p in problems if p.warning],
    )
