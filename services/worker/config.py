"""Worker settings, read once from the environment (and `.env`); the original's names."""

from enum import StrEnum
from typing import Any

from pydantic import Field, Json, SecretStr, model_validator

from services.common.settings import CommonSettings


class ModelBackendName(StrEnum):
    ECHO = "echo"
    TRANSFORMERS = "transformers"
    VLLM = "vllm"
    OPENAI = "openai"


class WorkerSettings(CommonSettings):
    MODEL_BACKEND: ModelBackendName = ModelBackendName.ECHO
    # The name clients put in meta.model; defaults to the queue name.
    MODEL_NAME: str = ""
    # More names clients may use for this model (comma-separated), like vLLM's served names.
    MODEL_ALIASES: str = ""
    MODEL_PATH: str = ""
    TOKENS_LEN: int = Field(4096, gt=0)
    GPU_MEMORY_UTILISATION: float = Field(0.9, gt=0, le=1)
    TENSOR_PARALLEL_SIZE: int = Field(1, ge=1)
    # Extra engine arguments as a JSON object (the fleet generator's `engine_args`).
    ENGINE_ARGS: Json[dict[str, Any]] = "{}"  # type: ignore[assignment]
    INNER_LLM_URL: str = ""
    # Upstream model name for the openai backend (defaults to MODEL_NAME).
    INNER_LLM_MODEL: str = ""
    INNER_LLM_API_KEY: SecretStr = SecretStr("")
    ECHO_TOKEN_DELAY_MS: float = Field(0.0, ge=0)

    # Jobs the worker holds at once. Unset: as many as the model runs at once (vLLM: its
    # max_num_seqs), or 16 for models without a capacity of their own.
    WORKER_CONCURRENCY: int | None = Field(None, ge=1, le=4096)
    # Largest queue length before new jobs are refused (429); 0 means unbounded.
    QUEUE_MAX_LENGTH: int = Field(10000, ge=0)
    # A job started this many times (worker crashes mid-job) is reported failed, not retried.
    JOB_MAX_TRIES: int = Field(3, ge=1)
    HEARTBEAT_INTERVAL: float = Field(2.0, gt=0)
    HEARTBEAT_TTL: float = Field(10.0, gt=0)
    HEARTBEAT_FILE: str = "/tmp/llm-wrap-worker.alive"
    # Seconds SIGTERM waits for jobs in progress before handing them back to the queue.
    DRAIN_TIMEOUT: float = Field(30.0, ge=0)
    # Port of the worker's Prometheus /metrics on every interface; 0: not served (several
    # workers on one host would need a port each). services/worker/metrics.py says what it holds.
    WORKER_METRICS_PORT: int = Field(0, ge=0, le=65535)
    # Serve that page over TLS with TLS_CERT_FILE / TLS_KEY_FILE, to clients with a certificate
    # signed by TLS_CA_FILE only (a worker on another host than its fleet's Prometheus).
    WORKER_METRICS_TLS: bool = False
    # The host this worker runs on, as operators name it (the fleet spec's `hosts[].name`; the
    # generator sets it): part of the worker's id, so `tools.ops.status` counts workers per host.
    # "": unnamed.
    WORKER_HOST: str = Field("", pattern=r"^[A-Za-z0-9._-]*$", max_length=63)

    @property
    def model_names(self) -> list[str]:
        aliases = [a.strip() for a in self.MODEL_ALIASES.split(",") if a.strip()]
        return [self.MODEL_NAME, *(a for a in aliases if a != self.MODEL_NAME)]

    @model_validator(mode="after")
    def _check(self) -> "WorkerSettings":
        if not self.MODEL_NAME:
            self.MODEL_NAME = self.QUEUE_NAME
        if self.MODEL_BACKEND in (ModelBackendName.TRANSFORMERS, ModelBackendName.VLLM):
            if not self.MODEL_PATH:
                raise ValueError(f"MODEL_PATH is required for MODEL_BACKEND={self.MODEL_BACKEND}")
        if self.MODEL_BACKEND is ModelBackendName.OPENAI and not self.INNER_LLM_URL:
            raise ValueError("INNER_LLM_URL is required for MODEL_BACKEND=openai")
        if self.WORKER_METRICS_TLS and not (self.TLS_CERT_FILE and self.TLS_CA_FILE):
            raise ValueError(
                "WORKER_METRICS_TLS needs TLS_CERT_FILE, TLS_KEY_FILE (the page's certificate) "
                "and TLS_CA_FILE (whose clients may read it)"
            )
        if self.HEARTBEAT_TTL <= self.HEARTBEAT_INTERVAL:
            raise ValueError("HEARTBEAT_TTL must be longer than HEARTBEAT_INTERVAL")
        return self
