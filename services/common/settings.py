"""Connection settings every service reads (names of the original protollm-api, kept).

Real environment variables win over a `.env` file in the working directory. Passwords and keys
are `SecretStr`: a settings object printed or logged shows `**********`. `env/example.env` lists
every setting of every service (tests/services/common/test_settings.py fails when it drifts).
"""

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Broker, result store and queue settings shared by backend and worker."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    RABBIT_MQ_HOST: str = "127.0.0.1"
    RABBIT_MQ_PORT: int = Field(5672, ge=1, le=65535)
    RABBIT_MQ_LOGIN: str = "guest"
    RABBIT_MQ_PASSWORD: SecretStr = SecretStr("guest")
    RABBIT_MQ_VHOST: str = "/"

    REDIS_HOST: str = "127.0.0.1"
    REDIS_PORT: int = Field(6379, ge=1, le=65535)
    REDIS_PASSWORD: SecretStr | None = None
    REDIS_DB: int = Field(0, ge=0)
    REDIS_PREFIX: str = "llm-wrap"

    QUEUE_NAME: str = "default"
    # Seconds a finished job's record stays readable in Redis.
    RESULT_TTL: int = Field(3600, gt=0)
    LOG_LEVEL: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"

    @property
    def redis_password(self) -> str | None:
        return self.REDIS_PASSWORD.get_secret_value() if self.REDIS_PASSWORD else None

    @property
    def amqp_url(self) -> str:
        from urllib.parse import quote

        vhost = quote(self.RABBIT_MQ_VHOST, safe="")
        login = quote(self.RABBIT_MQ_LOGIN, safe="")
        password = quote(self.RABBIT_MQ_PASSWORD.get_secret_value(), safe="")
        return f"amqp://{login}:{password}@{self.RABBIT_MQ_HOST}:{self.RABBIT_MQ_PORT}/{vhost}"
