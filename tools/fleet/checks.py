"""Rules that span fields or models, which the schema alone cannot state.

Each check takes what parsed and returns problems; none stops at the first, so the user sees
every problem of a fleet in one run.
"""

from __future__ import annotations

from collections.abc import Mapping

from tools.fleet.fields import GpuId
from tools.fleet.inventory import Inventory
from tools.fleet.problems import Problem
from tools.fleet.spec import FleetSettings, ModelSpec

GPU_BACKENDS = {"vllm"}
CPU_ONLY_BACKENDS = {"echo", "openai"}
NEEDS_PATH = {"vllm", "transformers"}

# Worker variables the generator computes, and the field a user sets each through instead.
RESERVED_ENV = {
    "MODEL_NAME": "name",
    "QUEUE_NAME": "queue",
    "MODEL_BACKEND": "backend",
    "MODEL_PATH": "path",
    "TOKENS_LEN": "max_model_len",
    "GPU_MEMORY_UTILISATION": "gpu_memory_utilisation",
    "TENSOR_PARALLEL_SIZE": "tensor_parallel_size",
    "NVIDIA_VISIBLE_DEVICES": "gpus",
    "WORKER_CONCURRENCY": "worker_concurrency",
    "ENGINE_ARGS": "engine_args",
    "INNER_LLM_URL": "inner_llm_url",
    "RABBIT_MQ_HOST": "",
    "RABBIT_MQ_PORT": "",
    "RABBIT_MQ_LOGIN": "",
    "RABBIT_MQ_PASSWORD": "",
    "REDIS_HOST": "",
    "REDIS_PORT": "",
    "REDIS_PASSWORD": "",
    "REDIS_PREFIX": "redis_prefix (fleet level)",
    # Prometheus scrapes the port the generator sets (monitoring.py).
    "WORKER_METRICS_PORT": "",
    "WORKER_HOST": "host",
    # Workers on other hosts than the first get these from `hosts` and `links`.
    "RABBIT_MQ_TLS": "hosts",
    "REDIS_TLS": "hosts",
    "TLS_CA_FILE": "hosts",
    "TLS_CERT_FILE": "hosts",
    "TLS_KEY_FILE": "hosts",
}
RESERVED_ENGINE_ARGS = {
    "model": "path",
    "tensor_parallel_size": "tensor_parallel_size",
    "max_model_len": "max_model_len",
    "gpu_memory_utilization": "gpu_memory_utilisation",
    "gpu_memory_utilisation": "gpu_memory_utilisation",
    "served_model_name": "name (and MODEL_ALIASES in env)",
}


def queue_of(model: ModelSpec) -> str:
    return model.queue or model.name


def pipeline_size(model: ModelSpec) -> int:
    value = model.engine_args.get("pipeline_parallel_size", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def gpu_count(model: ModelSpec) -> int:
    """GPUs the model runs on: listed, or asked for with `gpus: auto`."""
    if isinstance(model.gpus, list):
        return len(model.gpus)
    if model.gpus == "auto":
        tp = model.tensor_parallel_size
        return model.gpu_count or (tp * pipeline_size(model) if tp else pipeline_size(model))
    return 0


def tensor_parallel(model: ModelSpec) -> int:
    if model.tensor_parallel_size is not None:
        return model.tensor_parallel_size
    return max(1, gpu_count(model) // pipeline_size(model))


def check_model(i: int, m: ModelSpec) -> list[Problem]:
    """Rules within one model: what its backend needs, parallelism, reserved names."""
    at = f"models[{i}]"
    out: list[Problem] = []
    if m.backend in NEEDS_PATH and m.path is None:
        out.append(Problem(f"{at}.path", f"required for backend {m.backend}: the model directory"))
    if m.backend in GPU_BACKENDS and not m.gpus:
        out.append(
            Problem(f"{at}.gpus", f"required for backend {m.backend}: list GPUs or say 'auto'")
        )
    if m.backend in CPU_ONLY_BACKENDS and m.gpus:
        out.append(Problem(f"{at}.gpus", f"backend {m.backend} uses no GPU; remove gpus"))
    if m.backend == "openai" and m.inner_llm_url is None:
        out.append(Problem(f"{at}.inner_llm_url", "required for backend openai"))
    if m.backend != "openai" and m.inner_llm_url is not None:
        out.append(Problem(f"{at}.inner_llm_url", "only used by backend openai"))
    if m.gpu_count is not None and m.gpus != "auto":
        out.append(Problem(f"{at}.gpu_count", "only used with gpus: auto"))
    raw_pp = m.engine_args.get("pipeline_parallel_size", 1)
    if isinstance(raw_pp, bool) or not isinstance(raw_pp, int) or raw_pp < 1:
        out.append(
            Problem(f"{at}.engine_args.pipeline_parallel_size", "must be a positive integer")
        )
    pp, tp, count = pipeline_size(m), tensor_parallel(m), gpu_count(m)
    if count and tp * pp != count:
        also = f" x pipeline_parallel_size {pp}" if pp > 1 else ""
        what = "gpu_count" if m.gpus == "auto" else "GPUs in gpus"
        out.append(
            Problem(
                f"{at}.tensor_parallel_size",
                f"{tp}{also} does not match the {count} {what}",
            )
        )
    elif not count and m.gpus != "auto" and (tp > 1 or pp > 1):
        out.append(
            Problem(f"{at}.tensor_parallel_size", "parallelism needs GPUs; CPU models run with 1")
        )
    for key in m.env:
        if key in RESERVED_ENV:
            field = RESERVED_ENV[key]
            hint = f"; set it with {field}" if field else ""
            out.append(Problem(f"{at}.env.{key}", f"is set by the generator{hint}"))
    for key in m.engine_args:
        if key in RESERVED_ENGINE_ARGS:
            out.append(
                Problem(f"{at}.engine_args.{key}", f"set it with {RESERVED_ENGINE_ARGS[key]}")
            )
    return out


def head_of(settings: FleetSettings | None) -> str:
    """Name of the host that runs backend, broker and store; "" for a one-host fleet."""
    return settings.hosts[0].name if settings is not None and settings.hosts else ""


def host_of(model: ModelSpec, head: str) -> str:
    return model.host or head


def check_hosts(settings: FleetSettings, models: Mapping[int, ModelSpec]) -> list[Problem]:
    """Every model's `host` is listed; a host other than the first needs explicit GPUs."""
    out: list[Problem] = []
    names = [h.name for h in settings.hosts]
    head = head_of(settings)
    for kind in ("name", "address"):
        first: dict[str, int] = {}
        for j, host in enumerate(settings.hosts):
            value = getattr(host, kind)
            if value in first:
                out.append(
                    Problem(
                        f"hosts[{j}].{kind}", f"'{value}' is already used by hosts[{first[value]}]"
                    )
                )
            first.setdefault(value, j)
    for i, m in models.items():
        if m.host is None:
            continue
        if not names:
            out.append(Problem(f"models[{i}].host", "the fleet lists no hosts; add `hosts`"))
        elif m.host not in names:
            out.append(
                Problem(f"models[{i}].host", f"'{m.host}' is not in hosts ({', '.join(names)})")
            )
        elif m.host != head and m.gpus == "auto":
            out.append(
                Problem(
                    f"models[{i}].gpus",
                    f"'auto' places models on the first host ({head}) only; "
                    f"list the GPUs of {m.host}",
                )
            )
    used = {host_of(m, head) for m in models.values()}
    for j, host in enumerate(settings.hosts[1:], start=1):
        if host.name not in used and names.index(host.name) == j:
            out.append(
                Problem(f"hosts[{j}]", f"no model runs on '{host.name}'; nothing is rendered", True)
            )
    if not names and "links" in settings.model_fields_set:
        out.append(Problem("links", "only used with hosts; ignored", True))
    if settings.monitoring.enabled:
        base = settings.links.metrics_port
        for name in names[1:]:
            count = sum(1 for m in models.values() if m.host == name)
            if base + count - 1 > 65535:
                out.append(
                    Problem(
                        "links.metrics_port",
                        f"the {count} workers of '{name}' publish their metrics on "
                        f"{base}..{base + count - 1}, past 65535",
                    )
                )
    return out


def check_models(models: Mapping[int, ModelSpec], head: str = "") -> list[Problem]:
    """Rules across models: unique names, queues and GPUs (per host), one kind of GPU id."""
    out: list[Problem] = []
    names: dict[str, int] = {}
    queues: dict[str, int] = {}
    owners: dict[tuple[str, GpuId], int] = {}
    id_kind: tuple[type, int] | None = None
    for i, m in models.items():
        at = f"models[{i}]"
        if m.name in names:
            out.append(
                Problem(f"{at}.name", f"'{m.name}' is already used by models[{names[m.name]}]")
            )
        else:
            names[m.name] = i
        queue = queue_of(m)
        if queue in queues and not (m.queue is None and models[queues[queue]].name == m.name):
            field = "queue" if m.queue else "name"
            default = "" if m.queue else " (its default queue)"
            out.append(
                Problem(
                    f"{at}.{field}",
                    f"queue '{queue}'{default} is already used by models[{queues[queue]}]",
                )
            )
        queues.setdefault(queue, i)
        if not isinstance(m.gpus, list):
            continue
        for gpu in m.gpus:
            if id_kind is not None and type(gpu) is not id_kind[0]:
                mine, theirs = (
                    ("UUIDs", "indices") if isinstance(gpu, str) else ("indices", "UUIDs")
                )
                out.append(
                    Problem(
                        f"{at}.gpus",
                        f"uses GPU {mine} but models[{id_kind[1]}] uses GPU {theirs}; "
                        "use one kind across the fleet",
                    )
                )
                break
            id_kind = id_kind or (type(gpu), i)
            key = (host_of(m, head), gpu)
            if key in owners:
                on = f" on {key[0]}" if key[0] else ""
                out.append(
                    Problem(
                        f"{at}.gpus", f"GPU {gpu}{on} is already given to models[{owners[key]}]"
                    )
                )
            else:
                owners[key] = i
    return out


def check_ports(settings: FleetSettings) -> list[Problem]:
    """Host ports: the backend's range and every opt-in published port must not clash."""
    out: list[Problem] = []
    backend = settings.backend
    last = backend.port + backend.replicas - 1
    if last > 65535:
        out.append(
            Problem(
                "backend.replicas",
                f"{backend.replicas} replicas from port {backend.port} pass 65535",
            )
        )
    taken = {p: "backend.port" for p in range(backend.port, min(last, 65535) + 1)}
    published = [
        (f"{name}.port", svc.port)
        for name, svc in (("rabbitmq", settings.rabbitmq), ("redis", settings.redis))
        if svc.publish
    ]
    if settings.hosts:
        published += [
            ("links.rabbitmq_port", settings.links.rabbitmq_port),
            ("links.redis_port", settings.links.redis_port),
        ]
    monitoring = settings.monitoring
    if monitoring.enabled:
        published += [
            ("monitoring.prometheus_port", monitoring.prometheus_port),
            ("monitoring.grafana_port", monitoring.grafana_port),
        ]
    for path, port in published:
        if port in taken:
            out.append(Problem(path, f"host port {port} is already used by {taken[port]}"))
        else:
            taken[port] = path
    return out


def check_inventory(
    models: Mapping[int, ModelSpec], inventory: Inventory, head: str = ""
) -> list[Problem]:
    """Listed GPUs must exist on the host; a TP group of mixed GPU types gets a warning.
    The inventory is the first host's: models on other hosts are not checked against it."""
    out: list[Problem] = []
    for i, m in models.items():
        if not isinstance(m.gpus, list) or host_of(m, head) != head:
            continue
        found = []
        for gpu in m.gpus:
            hit = inventory.find(gpu)
            if hit is None:
                out.append(
                    Problem(
                        f"models[{i}].gpus",
                        f"GPU {gpu} is not in the inventory ({inventory.describe()})",
                    )
                )
            else:
                found.append(hit)
        kinds = sorted({g.name for g in found})
        if len(kinds) > 1:
            out.append(
                Problem(
                    f"models[{i}].gpus",
                    f"mixes GPU types ({', '.join(kinds)}); "
                    "the engine sizes memory by the smallest",
                    warning=True,
                )
            )
    return out
