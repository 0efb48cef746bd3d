"""Every value the templates print, computed here so that the templates stay logic-free.

Choices worth knowing (also in docs/fleet.md):
- restart `unless-stopped` (fleet `restart`): survives host reboots, respects a manual stop;
- shared memory: `1g` for one GPU (and CPU transformers), `2g` per GPU when tensor/pipeline
  parallel (NCCL and the engine's worker processes exchange through /dev/shm); IPC stays private
  rather than `ipc: host`, so workers cannot see each other's segments;
- workers get `stop_grace_period` = `job_timeout`: a draining worker finishes what it holds;
- `WORKER_CONCURRENCY` is left out for vLLM unless set: the worker then holds as many jobs as
  the engine runs at once (`max_num_seqs`), so it never starves the engine's batch;
- the backend's replicas share one published port range, one host port per replica;
- the backend reads `API_KEYS` from secrets.env; with `require_api_keys: false` its `environment`
  blanks it (environment wins over env_file), so the generated key is there but not enforced;
  `PUBLIC_ENDPOINTS` (backend.env) lists the operator pages left open, none by default;
- every service drops all capabilities and sets `no-new-privileges`; RabbitMQ and Redis get back
  the few their entrypoints need to chown their data and switch to their own user (see HARDENING);
- root filesystems are read-only where the image writes only to its volumes and /tmp (a tmpfs):
  backend, redis, CPU workers, prometheus, grafana. RabbitMQ's entrypoint chowns its config and
  GPU workers write compiler caches (vLLM, torch.compile, Triton) under $HOME and /tmp, and load
  the kernels they build from there (a noexec tmpfs would break them): both keep a writable one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tools.fleet import checks, envfile
from tools.fleet.build import Fleet
from tools.fleet.credentials import API_KEYS, SECRETS_FILE
from tools.fleet.fields import GpuId
from tools.fleet.spec import FleetSpec, ModelSpec

API_PORT = 8000
RABBIT_PORT = 5672
REDIS_PORT = 6379
# Each worker's own /metrics (services/worker/metrics.py), inside the fleet's network.
WORKER_METRICS_PORT = 9400
MODELS_ROOT = "/models"
VOLUMES = ("rabbitmq-data", "redis-data")
PUBLIC_ENDPOINTS = "PUBLIC_ENDPOINTS"
# Through sh so the password comes from the container's env, not the compose file; re-entering
# the image's entrypoint keeps its drop to the redis user.
REDIS_SERVER = 'exec docker-entrypoint.sh redis-server --requirepass "$$REDIS_PASSWORD" '

NO_NEW_PRIVILEGES = "no-new-privileges:true"


@dataclass(frozen=True)
class Hardening:
    """Capabilities given back after `cap_drop: [ALL]`; read-only root and its tmpfs mounts."""

    cap_add: list[str]
    read_only: bool
    tmpfs: list[str]


# Both entrypoints start as root: `find`/`chown` the data dir (CHOWN; DAC_OVERRIDE to walk the
# service's own 0700 dirs, as does RabbitMQ's root healthcheck reading the 0400 Erlang cookie),
# then su-exec/setpriv to the service user (SETUID, SETGID). DAC_OVERRIDE rather than the narrower
# DAC_READ_SEARCH, which Docker withholds by default for its open_by_handle_at escape.
_INFRA_CAPS = ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"]
HARDENING = {
    "rabbitmq": Hardening(_INFRA_CAPS, read_only=False, tmpfs=[]),
    "redis": Hardening(_INFRA_CAPS, read_only=True, tmpfs=["/tmp"]),
    # The project's images run as a non-root user from the start: no capability at all.
    "backend": Hardening([], read_only=True, tmpfs=["/tmp"]),
    # The heartbeat (HEARTBEAT_FILE) lives in /tmp.
    "worker-cpu": Hardening([], read_only=True, tmpfs=["/tmp"]),
    "worker-gpu": Hardening([], read_only=False, tmpfs=[]),
    "prometheus": Hardening([], read_only=True, tmpfs=[]),
    "grafana": Hardening([], read_only=True, tmpfs=["/tmp"]),
}


@dataclass(frozen=True)
class Healthcheck:
    test: list[str]
    interval: str
    timeout: str
    retries: int
    start_period: str


@dataclass(frozen=True)
class Mount:
    """A read-only bind of generated files; `source` is relative to the compose file."""

    source: str
    target: str


@dataclass(frozen=True)
class Infra:
    """rabbitmq or redis."""

    image: str
    command: list[str] | None
    ports: list[str]
    healthcheck: Healthcheck
    hardening: Hardening
    entrypoint: list[str] | None = None
    mounts: list[Mount] = field(default_factory=list)


@dataclass(frozen=True)
class Backend:
    image: str
    ports: list[str]
    replicas: int | None
    environment: list[tuple[str, str]]
    healthcheck: Healthcheck
    hardening: Hardening


@dataclass(frozen=True)
class Worker:
    service: str
    model: str
    image: str
    env_file: str
    mount_source: str | None
    mount_target: str
    shm_size: str | None
    device_ids: list[str]
    healthcheck: Healthcheck
    env: list[tuple[str, str]]
    hardening: Hardening
    # (service, condition): RabbitMQ and Redis beside it, or a remote host's tls-files step.
    depends_on: list[tuple[str, str]]
    # Named volume holding the client certificate, on a host other than the first.
    tls_volume: str | None = None
    # Published ports (a remote worker's metrics page, with monitoring).
    ports: list[str] = field(default_factory=list)
    tls_target: str = ""


@dataclass(frozen=True)
class OneShot:
    """A service that runs once before the workers (a remote host's tls-files step)."""

    service: str
    image: str
    user: str
    entrypoint: list[str]
    mounts: list[Mount]
    volume: str
    volume_target: str
    hardening: Hardening


@dataclass(frozen=True)
class HostPlan:
    """A host other than the first: its own compose project of workers under `folder`."""

    name: str
    address: str
    folder: str
    project: str
    workers: list[Worker]
    setup: OneShot
    secrets_file: str
    # address:port of each worker's metrics page (with monitoring), for the first host's Prometheus.
    metrics_targets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    project: str
    network: str
    restart: str
    log_max_size: str
    log_max_file: str
    stop_grace_period: str
    rabbitmq: Infra
    redis: Infra
    backend: Backend
    backend_env: list[tuple[str, str]]
    workers: list[Worker]
    volumes: tuple[str, ...]
    secrets_file: str
    api_keys_enforced: bool
    no_new_privileges: str
    # The other hosts of a fleet over several hosts (links.py), each its own compose project.
    remotes: list[HostPlan] = field(default_factory=list)
    # RabbitMQ's TLS listener config (links.py), rendered beside the compose file when set.
    links_conf: str | None = None


def escape(value: str) -> str:
    """A user value inside the compose file: `$` would start Compose interpolation."""
    return value.replace("$", "$$")


def image_name(spec: FleetSpec, name: str) -> str:
    registry = spec.images.registry
    return f"{registry}/{name}" if registry else name


def publish_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def env_pairs(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(key, envfile.quote(value)) for key, value in items]


def worker_env(
    spec: FleetSpec,
    model: ModelSpec,
    devices: list[GpuId],
    connection: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """The worker's variables (the services' public names), unquoted, in file order.
    `connection` replaces how it reaches RabbitMQ and Redis (a worker on another host)."""
    env = [
        ("MODEL_NAME", model.name),
        ("QUEUE_NAME", checks.queue_of(model)),
        ("MODEL_BACKEND", model.backend),
        ("MODEL_PATH", f"{MODELS_ROOT}/{model.name}" if model.path else ""),
        ("TOKENS_LEN", str(model.max_model_len)),
        ("GPU_MEMORY_UTILISATION", repr(model.gpu_memory_utilisation)),
        ("TENSOR_PARALLEL_SIZE", str(checks.tensor_parallel(model))),
        ("NVIDIA_VISIBLE_DEVICES", ",".join(str(d) for d in devices)),
    ]
    concurrency = _concurrency(model)
    if concurrency is not None:
        env.append(("WORKER_CONCURRENCY", str(concurrency)))
    env.append(
        ("ENGINE_ARGS", json.dumps(model.engine_args, separators=(",", ":"), ensure_ascii=False))
    )
    if model.backend == "openai" and model.inner_llm_url:
        env.append(("INNER_LLM_URL", model.inner_llm_url))
    if connection is not None:
        env += connection
    else:
        env += [
            ("RABBIT_MQ_HOST", "rabbitmq"),
            ("RABBIT_MQ_PORT", str(RABBIT_PORT)),
            ("REDIS_HOST", "redis"),
            ("REDIS_PORT", str(REDIS_PORT)),
        ]
    env.append(("REDIS_PREFIX", spec.redis_prefix))
    env.append(("WORKER_METRICS_PORT", str(WORKER_METRICS_PORT)))
    if spec.hosts:  # `tools.ops.status` counts each model's workers by host
        env.append(("WORKER_HOST", model.host or spec.hosts[0].name))
    return env + list(model.env.items())


def backend_env(spec: FleetSpec) -> list[tuple[str, str]]:
    return [
        ("RABBIT_MQ_HOST", "rabbitmq"),
        ("RABBIT_MQ_PORT", str(RABBIT_PORT)),
        ("REDIS_HOST", "redis"),
        ("REDIS_PORT", str(REDIS_PORT)),
        ("REDIS_PREFIX", spec.redis_prefix),
        ("QUEUE_NAME", checks.queue_of(spec.models[0])),
        ("JOB_TIMEOUT", str(spec.job_timeout)),
        ("API_PORT", str(API_PORT)),
        (PUBLIC_ENDPOINTS, public_endpoints(spec)),
    ]


def public_endpoints(spec: FleetSpec) -> str:
    """`PUBLIC_ENDPOINTS`: the spec's list in a fixed order; empty keeps every page keyed."""
    listed = spec.backend.public_endpoints
    return ",".join(name for name in ("metrics", "docs") if name in listed)


def _concurrency(model: ModelSpec) -> int | None:
    """None leaves `WORKER_CONCURRENCY` unset: a vLLM worker then follows its engine."""
    if model.worker_concurrency is not None:
        return model.worker_concurrency
    if model.backend == "vllm":
        return None
    return 1 if model.backend == "transformers" else 16


def _shm(model: ModelSpec, devices: list[GpuId]) -> str | None:
    if model.shm_size:
        return model.shm_size
    if len(devices) > 1:
        return f"{2 * len(devices)}g"
    if devices or model.backend == "transformers":
        return "1g"
    return None


@dataclass(frozen=True)
class Remote:
    """How a worker on another host than the first reaches it (see links.py)."""

    connection: list[tuple[str, str]]
    depends_on: list[tuple[str, str]]
    tls_volume: str
    tls_target: str


def make_worker(
    spec: FleetSpec, model: ModelSpec, devices: list[GpuId], remote: Remote | None = None
) -> Worker:
    gpu = bool(devices)
    default = spec.images.worker_gpu if gpu else spec.images.worker_cpu
    start = (
        model.start_period
        if model.start_period is not None
        else (600 if model.backend == "vllm" else 60)
    )
    return Worker(
        service=f"worker-{model.name}",
        model=model.name,
        image=escape(model.image or image_name(spec, default)),
        env_file=f"env/worker-{model.name}.env",
        mount_source=escape(model.path) if model.path else None,
        mount_target=f"{MODELS_ROOT}/{model.name}",
        shm_size=_shm(model, devices),
        device_ids=[str(d) for d in devices],
        healthcheck=Healthcheck(
            ["CMD", "python", "-m", "services.worker.healthcheck"], "15s", "10s", 3, f"{start}s"
        ),
        env=env_pairs(worker_env(spec, model, devices, remote.connection if remote else None)),
        hardening=HARDENING["worker-gpu" if gpu else "worker-cpu"],
        depends_on=remote.depends_on
        if remote
        else [("rabbitmq", "service_healthy"), ("redis", "service_healthy")],
        tls_volume=remote.tls_volume if remote else None,
        tls_target=remote.tls_target if remote else "",
    )


def make_plan(fleet: Fleet) -> Plan:
    spec = fleet.spec
    backend = spec.backend
    last = backend.port + backend.replicas - 1
    ports = f"{backend.port}-{last}" if backend.replicas > 1 else str(backend.port)
    # Enforced: the key in secrets.env reaches the backend through its env_file, untouched.
    environment = [] if backend.require_api_keys else [(API_KEYS, "")]
    redis_args = "--appendonly yes" if spec.redis.appendonly else "--appendonly no"
    loopback = "127.0.0.1"
    head = checks.head_of(spec)
    here = [
        (m, d)
        for m, d in zip(spec.models, fleet.devices, strict=True)
        if checks.host_of(m, head) == head
    ]
    return Plan(
        project=spec.name,
        network=spec.network,
        restart=spec.restart,
        log_max_size=spec.logging.max_size,
        log_max_file=str(spec.logging.max_file),
        stop_grace_period=f"{spec.job_timeout}s",
        rabbitmq=Infra(
            image=escape(image_name(spec, spec.images.rabbitmq)),
            command=None,
            ports=[f"{loopback}:{spec.rabbitmq.port}:{RABBIT_PORT}"]
            if spec.rabbitmq.publish
            else [],
            # `ping` answers as soon as the Erlang node runs, before the broker's listeners
            # are up; this check passes only once AMQP connections are accepted.
            healthcheck=Healthcheck(
                ["CMD", "rabbitmq-diagnostics", "-q", "check_port_connectivity"],
                "10s",
                "10s",
                6,
                "30s",
            ),
            hardening=HARDENING["rabbitmq"],
        ),
        redis=Infra(
            image=escape(image_name(spec, spec.images.redis)),
            command=["sh", "-c", REDIS_SERVER + redis_args],
            ports=[f"{loopback}:{spec.redis.port}:{REDIS_PORT}"] if spec.redis.publish else [],
            healthcheck=Healthcheck(
                [
                    "CMD-SHELL",
                    'redis-cli -a "$$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG',
                ],
                "5s",
                "5s",
                10,
                "10s",
            ),
            hardening=HARDENING["redis"],
        ),
        backend=Backend(
            image=escape(image_name(spec, spec.images.backend)),
            ports=[f"{publish_host(backend.host)}:{ports}:{API_PORT}"],
            replicas=backend.replicas if backend.replicas > 1 else None,
            environment=environment,
            healthcheck=Healthcheck(
                ["CMD", "python", "-m", "services.backend.healthcheck"], "10s", "5s", 3, "20s"
            ),
            hardening=HARDENING["backend"],
        ),
        backend_env=env_pairs(backend_env(spec)),
        workers=[make_worker(spec, m, d) for m, d in here],
        volumes=VOLUMES,
        secrets_file=SECRETS_FILE,
        api_keys_enforced=backend.require_api_keys,
        no_new_privileges=NO_NEW_PRIVILEGES,
    )
