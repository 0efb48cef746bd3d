"""Connection settings every service reads (names of the original protollm-api, kept).

Real environment variables win over a `.env` file in the working directory. Passwords and keys
are `SecretStr`: a settings object printed or logged shows `**********`. `env/example.env` lists
every setting of every service (tests/services/common/test_settings.py fails when it drifts).

RABBIT_MQ_TLS / REDIS_TLS encrypt the links to the broker and the store, for workers on other
hosts than the broker: the server's certificate is verified (against TLS_CA_FILE, else the
system's CAs) and must name RABBIT_MQ_HOST / REDIS_HOST; TLS_CERT_FILE and TLS_KEY_FILE add a
client certificate for servers that require one. One CA and one client certificate serve both.
"""

import ssl
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, model_validator
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

    RABBIT_MQ_TLS: bool = False
    REDIS_TLS: bool = False
    TLS_CA_FILE: str = ""
    TLS_CERT_FILE: str = ""
    TLS_KEY_FILE: str = ""

    QUEUE_NAME: str = "default"
    # Seconds a finished job's record stays readable in Redis.
    RESULT_TTL: int = Field(3600, gt=0)
    LOG_LEVEL: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        if bool(self.TLS_CERT_FILE) != bool(self.TLS_KEY_FILE):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
        for name in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {path!r}")
        return self

    def tls_context(self) -> ssl.SSLContext:
        """The client side of RABBIT_MQ_TLS and REDIS_TLS: verify the server, optionally show
        our certificate."""
        context = ssl.create_default_context(cafile=self.TLS_CA_FILE or None)
        if self.TLS_CERT_FILE:
            context.load_cert_chain(self.TLS_CERT_FILE, self.TLS_KEY_FILE)
        return context

    @property
    def redis_password(self) -> str | None:
        return self.REDIS_PASSWORD.get_secret_value() if self.REDIS_PASSWORD else None

    @property
    def amqp_url(self) -> str:
        from urllib.parse import quote

        vhost = quote(self.RABBIT_MQ_VHOST, safe="")
        login = quote(self.RABBIT_MQ_LOGIN, safe="")
        password = quote(self.RABBIT_MQ_PASSWORD.get_secret_value(), safe="")
        scheme = "amqps" if self.RABBIT_MQ_TLS else "amqp"
        return f"{scheme}://{login}:{password}@{self.RABBIT_MQ_HOST}:{self.RABBIT_MQ_PORT}/{vhost}"
