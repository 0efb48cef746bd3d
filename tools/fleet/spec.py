"""The fleet spec: a strict pydantic schema of FLEET.yaml.

Unknown keys are errors (a typo must never pass silently) and every field has a default except
`models[].name`, `models[].path` and `models[].gpus`; the last two are optional in the schema only
because `echo`/`openai` models need neither, and `checks.py` requires them where they matter.
Field descriptions are the user documentation: `python -m tools.fleet docs` prints them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tools.fleet.fields import (
    DNS_RE,
    DURATION_RE,
    NETWORK_RE,
    PREFIX_RE,
    PROJECT_RE,
    REGISTRY_RE,
    SIZE_RE,
    Backend,
    EngineArgs,
    EnvMap,
    GpuList,
    Port,
    check_image,
    check_ip,
    check_name,
    check_no_control,
    describe,
)

# Upper bounds: generous for any real fleet, small enough that every value prints as something
# Compose, Prometheus and the services read (a 400-digit job_timeout is no stop_grace_period).
MAX_GPUS = 1024
MAX_SECONDS = 86_400
MAX_TOKENS = 2**27
MAX_CONCURRENCY = 100_000
PublicEndpoint = Literal["metrics", "docs"]


class StrictModel(BaseModel):
    """Base of every spec section: unknown keys are errors, values are immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(StrictModel):
    """One model, served by one worker service pinned to its GPUs."""

    name: str = Field(
        description="Model name clients put in `meta.model`; the worker service is "
        "`worker-<name>`. Lowercase letters, digits, `-`, `_`, `.`; starts with a letter or digit."
    )
    path: str | None = Field(
        default=None,
        description="Absolute host path of the model directory, mounted read-only at "
        "`/models/<name>` (`MODEL_PATH`). Required for `vllm` and `transformers`.",
    )
    gpus: GpuList = Field(
        default=None,
        description="GPUs the worker is pinned to: host indices (`[0, 1]`) or UUIDs "
        "(`[GPU-...]`), never both in one fleet; or `auto` to let render place it on free GPUs "
        "of the inventory. Required for `vllm`; `[]` or omitted runs on CPU.",
        json_schema_extra={"x-doc-type": "list of GPU indices (integers) or UUIDs, or `auto`"},
    )
    gpu_count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_GPUS,
        description="With `gpus: auto`: how many GPUs to place the model on "
        "(default: `tensor_parallel_size`, else 1).",
    )
    tensor_parallel_size: int | None = Field(
        default=None,
        ge=1,
        le=MAX_GPUS,
        description="`TENSOR_PARALLEL_SIZE`. Default: the number of GPUs (1 on CPU). Times "
        "`engine_args.pipeline_parallel_size` it must equal the number of GPUs.",
    )
    max_model_len: int = Field(
        default=4096,
        ge=1,
        le=MAX_TOKENS,
        description="Longest sequence (prompt + answer) in tokens: `TOKENS_LEN`.",
    )
    gpu_memory_utilisation: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Share of each GPU's memory the engine may take: `GPU_MEMORY_UTILISATION`.",
    )
    backend: Backend = Field(default="vllm", description="`MODEL_BACKEND` of the worker.")
    queue: str | None = Field(
        default=None,
        description="RabbitMQ queue the worker serves (`QUEUE_NAME`); default: `name`.",
    )
    worker_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENCY,
        description="`WORKER_CONCURRENCY`, jobs the worker holds at once. Default: for `vllm`, "
        "the engine's `max_num_seqs` (`engine_args.max_num_seqs`, else what vLLM picks for the "
        "GPU; the variable is then not written); 1 for `transformers`; 16 for `echo` and `openai`.",
    )
    inner_llm_url: str | None = Field(
        default=None,
        description="`INNER_LLM_URL`, the OpenAI-compatible server an `openai` model forwards to "
        "(required there, refused elsewhere).",
    )
    env: EnvMap = Field(
        default_factory=dict,
        description="Extra environment variables for the worker (e.g. `ECHO_TOKEN_DELAY_MS`); "
        "they may not override the generated ones.",
    )
    engine_args: EngineArgs = Field(
        default_factory=dict,
        description="Extra engine keyword arguments, passed as the JSON object `ENGINE_ARGS` "
        "(e.g. `{enable_prefix_caching: true}`). Fields above are set with their own keys.",
    )
    image: str | None = Field(
        default=None,
        description="Image of this worker; default `images.worker_gpu` or `images.worker_cpu`.",
    )
    shm_size: str | None = Field(
        default=None,
        description="Shared memory (`/dev/shm`) of the worker, e.g. `8g`. Default: `1g` for one "
        "GPU or a CPU `transformers` model, `2g` per GPU when tensor/pipeline parallel.",
    )
    start_period: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="Seconds the healthcheck waits for the model to load before failures count. "
        "Default: 600 for `vllm`, 60 otherwise.",
    )
    host: str | None = Field(
        default=None,
        description="Name of the `hosts` entry whose GPUs run this worker. Default: the first "
        "host, the one that runs the backend, RabbitMQ and Redis (the only host without `hosts`).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "model name (it names a compose service and a queue)")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "host name")

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "queue name")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(
                f"{describe(value)} is relative; give the absolute host path of the model"
            )
        if value is not None and value.rstrip("/") == "":
            raise ValueError(f"{describe(value)} is not a usable model directory")
        if value is not None:
            check_no_control(value, "a model path")
        return value if value is None else value.rstrip("/")

    @field_validator("shm_size")
    @classmethod
    def _shm(cls, value: str | None) -> str | None:
        if value is not None and not SIZE_RE.fullmatch(value):
            raise ValueError(f"{describe(value)} is not a size like 512m or 8g")
        return value

    @field_validator("inner_llm_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"{describe(value)} is not an http(s) URL")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else check_image(value)


class ImagesSpec(StrictModel):
    """Images of every service; point them at a private registry when air-gapped."""

    registry: str = Field(
        default="",
        description="Prefix put before the images below (e.g. `registry.local:5000`); "
        "per-model `image` overrides are used as written.",
    )
    backend: str = Field(default="llmwrap/backend:0.1.0", description="Backend (API) image.")
    worker_gpu: str = Field(
        default="llmwrap/worker-gpu:0.1.0",
        description="Worker image for `vllm`, and for `transformers` on GPUs.",
    )
    worker_cpu: str = Field(
        default="llmwrap/worker-cpu:0.1.0",
        description="Worker image for `echo`, `openai`, and `transformers` without GPUs.",
    )
    rabbitmq: str = Field(default="rabbitmq:3.13-alpine", description="RabbitMQ image.")
    redis: str = Field(default="redis:7.2-alpine", description="Redis image.")
    prometheus: str = Field(
        default="prom/prometheus:v2.55.1", description="Prometheus image (`monitoring`)."
    )
    grafana: str = Field(
        default="grafana/grafana:11.4.0", description="Grafana image (`monitoring`)."
    )

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not REGISTRY_RE.fullmatch(value):
            raise ValueError(
                f"{describe(value)} is not a registry (host[:port][/path], e.g. reg.local:5000)"
            )
        return value

    @field_validator(
        "backend", "worker_gpu", "worker_cpu", "rabbitmq", "redis", "prometheus", "grafana"
    )
    @classmethod
    def _image(cls, value: str) -> str:
        return check_image(value)

    @model_validator(mode="after")
    def _with_registry(self) -> ImagesSpec:
        """The registry prefix must still make valid references (`Host:5000/x` is no path)."""
        if self.registry:
            for name in ImagesSpec.model_fields:
                if name != "registry":
                    check_image(f"{self.registry}/{getattr(self, name)}")
        return self


class BackendSpec(StrictModel):
    """The API service."""

    host: str = Field(
        default="0.0.0.0",
        description="Host address the API is published on (`127.0.0.1` keeps it local).",
    )
    port: Port = Field(
        default=8000,
        description="Host port of the API; with `replicas` > 1, the range "
        "`port`..`port+replicas-1`.",
    )
    replicas: int = Field(
        default=1, ge=1, le=64, description="Backend containers (`deploy.replicas`)."
    )
    require_api_keys: bool = Field(
        default=True,
        description="Require an API key on every request: the backend reads `API_KEYS` "
        "(comma-separated) from `env/secrets.env`, where render generates one key and keeps "
        "what you list there. `false` opts out: the backend gets `API_KEYS` empty and accepts "
        "requests without a key.",
    )
    public_endpoints: list[PublicEndpoint] = Field(
        default_factory=list,
        description="Endpoints left open without a key when keys are required: `metrics` "
        "(`/metrics`: model names, job counts) and/or `docs` (`/docs`, `/redoc`, "
        "`/openapi.json`), as the backend's `PUBLIC_ENDPOINTS`. Default: none. With `monitoring` "
        "on and `metrics` keyed, Prometheus scrapes with the first key of `API_KEYS`.",
        json_schema_extra={"x-doc-type": "list of `metrics`, `docs`"},
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_ip(value)

    @field_validator("public_endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an endpoint twice")
        return value


class RabbitMQSpec(StrictModel):
    """The broker. Never published on public interfaces."""

    publish: bool = Field(
        default=False, description="Publish AMQP on `127.0.0.1:<port>` of the host."
    )
    port: Port = Field(default=5672, description="Host port used when `publish` is true.")


class RedisSpec(StrictModel):
    """The result store. Never published on public interfaces."""

    publish: bool = Field(default=False, description="Publish Redis on `127.0.0.1:<port>`.")
    port: Port = Field(default=6379, description="Host port used when `publish` is true.")
    appendonly: bool = Field(
        default=True, description="Persist with Redis' append-only file in the `redis-data` volume."
    )


class MonitoringSpec(StrictModel):
    """Prometheus and Grafana, in the compose profile `monitoring`."""

    enabled: bool = Field(
        default=False,
        description="Render `prometheus` and `grafana` (and their config under `monitoring/`); "
        "they start with `docker compose --profile monitoring up -d`. Grafana's `admin` "
        "password is generated into `env/secrets.env`.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Host address Prometheus and Grafana are published on.",
    )
    prometheus_port: Port = Field(default=9090, description="Host port of Prometheus.")
    grafana_port: Port = Field(default=3000, description="Host port of Grafana.")
    scrape_interval: str = Field(
        default="15s", description="How often Prometheus scrapes every backend's `/metrics`."
    )
    retention: str = Field(
        default="15d", description="How long Prometheus keeps samples (`prometheus-data` volume)."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_ip(value)

    @field_validator("scrape_interval", "retention")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not DURATION_RE.fullmatch(value):
            raise ValueError(f"{describe(value)} is not a duration like 15s, 1m or 15d")
        return value


class LoggingSpec(StrictModel):
    """Log rotation of every service (json-file driver)."""

    max_size: str = Field(default="10m", description="Size at which a log file is rotated.")
    max_file: int = Field(
        default=3, ge=1, le=1000, description="Rotated log files kept per container."
    )

    @field_validator("max_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not SIZE_RE.fullmatch(value):
            raise ValueError(f"{describe(value)} is not a size like 10m")
        return value


class HostSpec(StrictModel):
    """One machine of a fleet spread over several hosts."""

    name: str = Field(
        description="Name models refer to with `host`; it names the host's folder of the "
        "render (`hosts/<name>/`) and its compose project (`<fleet name>-<name>`)."
    )
    address: str = Field(
        description="IP address or DNS name the other hosts reach this one at. The first "
        "host's address is what remote workers dial for RabbitMQ and Redis, and what their "
        "server certificate names."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "host name")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return check_ip(value).strip("[]")
        except ValueError:
            pass
        if not DNS_RE.fullmatch(value) or value.rsplit(".", 1)[-1].isdigit():
            raise ValueError(f"{describe(value)} is neither an IP address nor a DNS name")
        return value.lower()


class LinksSpec(StrictModel):
    """How workers on other hosts reach the first host's RabbitMQ and Redis (with `hosts`)."""

    listen: str = Field(
        default="0.0.0.0",
        description="Address the TLS ports below are published on: the first host's RabbitMQ "
        "and Redis, and (with monitoring) the other hosts' worker metrics.",
    )
    rabbitmq_port: Port = Field(
        default=5671,
        description="Host port of RabbitMQ's TLS listener (AMQPS; a client certificate is "
        "required). Plain AMQP stays inside the first host's Docker network.",
    )
    redis_port: Port = Field(
        default=6380,
        description="Host port of Redis' TLS listener (a client certificate is required).",
    )
    metrics_port: Port = Field(
        default=9400,
        description="With monitoring: host port of the first worker's metrics on each other "
        "host, the next ones on the following ports (HTTPS, a client certificate is required); "
        "the first host's Prometheus scrapes them.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_ip(value)


class FleetSettings(StrictModel):
    """Everything in FLEET.yaml except `models` (validated on its own, model by model)."""

    name: str = Field(
        default="llm-wrap",
        description="Compose project name (top-level `name:` of the compose file).",
    )
    network: str = Field(
        default="llm_wrap_network",
        description="Docker network every service joins, created with exactly this name. "
        "Give each fleet on one host its own.",
    )
    redis_prefix: str = Field(
        default="llm-wrap", description="`REDIS_PREFIX` of every key the stack writes."
    )
    job_timeout: int = Field(
        default=300,
        ge=1,
        le=MAX_SECONDS,
        description="`JOB_TIMEOUT`, seconds a request waits for its job; also the workers' "
        "`stop_grace_period`, so a stopping worker can finish what it holds.",
    )
    restart: Literal["unless-stopped", "on-failure", "always", "no"] = Field(
        default="unless-stopped", description="Restart policy of every service."
    )
    memory_check: Literal["error", "warn", "off"] = Field(
        default="error",
        description="What to do when a model's estimated weights + KV cache cannot fit its "
        "GPUs (needs an inventory and a `config.json` in the model dir).",
    )
    images: ImagesSpec = Field(default_factory=ImagesSpec, description="Service images.")
    backend: BackendSpec = Field(default_factory=BackendSpec, description="The API service.")
    rabbitmq: RabbitMQSpec = Field(default_factory=RabbitMQSpec, description="The broker.")
    redis: RedisSpec = Field(default_factory=RedisSpec, description="The result store.")
    logging: LoggingSpec = Field(default_factory=LoggingSpec, description="Log rotation.")
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec, description="Prometheus and Grafana."
    )
    hosts: list[HostSpec] = Field(
        default_factory=list,
        description="The machines of a fleet spread over several hosts; the first runs the "
        "backend, RabbitMQ, Redis and monitoring (and the workers of models without `host`), "
        "every other one only its models' workers, which reach the first over TLS with "
        "client certificates (`links`). Render writes `hosts/<name>/` for each other host and "
        "makes a private CA with its certificates under `tls/`. Empty: one host.",
    )
    links: LinksSpec = Field(
        default_factory=LinksSpec,
        description="TLS ports of the first host for workers on the others (with `hosts`).",
    )

    @field_validator("restart", "memory_check", mode="before")
    @classmethod
    def _yaml_false(cls, value: object, info: ValidationInfo) -> object:
        """YAML 1.1 reads a bare `no` / `off` as false: take it as the word the user wrote."""
        if value is False:
            return "no" if info.field_name == "restart" else "off"
        return value

    @field_validator("name")
    @classmethod
    def _project(cls, value: str) -> str:
        if not PROJECT_RE.fullmatch(value):
            raise ValueError(
                f"{describe(value)} is not a valid compose project name: lowercase letters, "
                "digits, '-' and '_', starting with a letter or digit"
            )
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        if not NETWORK_RE.fullmatch(value):
            raise ValueError(f"{describe(value)} is not a valid Docker network name")
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not PREFIX_RE.fullmatch(value):
            raise ValueError(
                f"{describe(value)} is not a usable key prefix (letters, digits, . _ : -)"
            )
        return value


class FleetSpec(FleetSettings):
    """A whole FLEET.yaml."""

    models: list[ModelSpec] = Field(
        min_length=1, description="The models; the first one is the default model."
    )
