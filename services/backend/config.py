"""Backend settings, read once from the environment (and `.env`)."""

from functools import lru_cache

from pydantic import Field, SecretStr

from services.common.settings import CommonSettings


class Settings(CommonSettings):
    API_PORT: int = Field(8000, ge=1, le=65535)
    # Seconds a request waits for its job before answering 504.
    JOB_TIMEOUT: float = Field(300.0, gt=0)
    # Comma-separated keys; when set, every job endpoint requires one (Bearer or X-API-Key).
    API_KEYS: SecretStr = SecretStr("")
    # A file of keys, one per line, re-read when it changes; when set, keys are required.
    API_KEYS_FILE: str = ""
    # Operator pages left open when keys are required: `metrics` (/metrics), `docs` (/docs,
    # /redoc, /openapi.json). Comma-separated; empty keys them too.
    PUBLIC_ENDPOINTS: str = "metrics,docs"
    # Largest request body accepted (413 above it, before it is read).
    MAX_BODY_BYTES: int = Field(4 * 1024 * 1024, ge=1024, le=1024**3)
    # Seconds to wait for the broker's confirmation before answering 503.
    PUBLISH_TIMEOUT: float = Field(1.5, gt=0)
    # How often the live-worker view is refreshed from Redis.
    REGISTRY_REFRESH_S: float = Field(1.0, gt=0)

    @property
    def public_endpoints(self) -> frozenset[str]:
        names = frozenset(n.strip() for n in self.PUBLIC_ENDPOINTS.split(",") if n.strip())
        unknown = names - {"metrics", "docs"}
        if unknown:
            raise ValueError(f"PUBLIC_ENDPOINTS: unknown {sorted(unknown)} (metrics, docs)")
        return names

    @property
    def api_keys(self) -> frozenset[str]:
        keys = self.API_KEYS.get_secret_value().split(",")
        return frozenset(k.strip() for k in keys if k.strip())


@lru_cache
def get_settings() -> Settings:
    return Settings()
