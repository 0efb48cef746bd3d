"""secrets.env: generated once (mode 0600), reused unchanged, completed, never the defaults."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest


def test_secrets_generated_once_then_reused(cli, write_fleet, tmp_path: Path, read_env) -> None:
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    run = cli("render", spec, "--out", out)
    assert run.code == 0 and "wrote credentials" in run.out
    path = out / "env" / "secrets.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secrets = read_env(path)
    assert list(secrets) == [
        "RABBIT_MQ_LOGIN",
        "RABBIT_MQ_PASSWORD",
        "REDIS_PASSWORD",
        "RABBITMQ_DEFAULT_USER",
        "RABBITMQ_DEFAULT_PASS",
    ]
    assert secrets["RABBITMQ_DEFAULT_USER"] == secrets["RABBIT_MQ_LOGIN"]
    assert secrets["RABBITMQ_DEFAULT_PASS"] == secrets["RABBIT_MQ_PASSWORD"]
    assert secrets["RABBIT_MQ_LOGIN"] not in ("admin", "guest")
    assert len(secrets["RABBIT_MQ_PASSWORD"]) >= 32 and len(secrets["REDIS_PASSWORD"]) >= 32
    assert secrets["RABBIT_MQ_PASSWORD"] != secrets["REDIS_PASSWORD"]
    before = path.read_bytes()
    compose = (out / "docker-compose.yml").read_text()
    assert all(value not in compose for value in secrets.values())
    run = cli("render", spec, "--out", out)
    assert run.code == 0 and "wrote credentials" not in run.out
    assert path.read_bytes() == before
    # A different output directory is a different deployment: fresh credentials.
    cli("render", spec, "--out", tmp_path / "other")
    assert (tmp_path / "other" / "env" / "secrets.env").read_bytes() != before


def test_incomplete_secrets_are_completed_keeping_values(
    cli, write_fleet, tmp_path, read_env
) -> None:
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    (out / "env").mkdir(parents=True)
    (out / "env" / "secrets.env").write_text(
        "RABBITMQ_DEFAULT_USER=ops\nRABBITMQ_DEFAULT_PASS=s3cret\nEXTRA=1\n"
    )
    (out / "env" / "secrets.env").chmod(0o600)
    assert cli("render", spec, "--out", out).code == 0
    secrets = read_env(out / "env" / "secrets.env")
    assert secrets["RABBIT_MQ_LOGIN"] == "ops" and secrets["RABBIT_MQ_PASSWORD"] == "s3cret"
    assert secrets["EXTRA"] == "1" and len(secrets["REDIS_PASSWORD"]) >= 32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "RABBIT_MQ_LOGIN=a\nRABBIT_MQ_PASSWORD=b\nREDIS_PASSWORD=c\nRABBITMQ_DEFAULT_USER=x\n"
            "RABBITMQ_DEFAULT_PASS=b\n",
            "RABBITMQ_DEFAULT_USER differs from RABBIT_MQ_LOGIN; make them equal (RabbitMQ keeps "
            "the user it was first started with)",
        ),
        (
            "RABBIT_MQ_LOGIN=guest\nRABBIT_MQ_PASSWORD=guest\n",
            "refusing the default RabbitMQ credentials; set others",
        ),
        ("not an env line\n", "cannot read line 'not an env line'; fix it or delete the file"),
    ],
)
def test_bad_existing_secrets(cli, write_fleet, tmp_path, content: str, message: str) -> None:
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    (out / "env").mkdir(parents=True)
    (out / "env" / "secrets.env").write_text(content)
    (out / "env" / "secrets.env").chmod(0o600)
    run = cli("render", spec, "--out", out)
    assert run.code == 2 and run.lines == [f"{out / 'env' / 'secrets.env'}: {message}"]
    assert not (out / "docker-compose.yml").exists()


def test_world_readable_secrets_warn(cli, write_fleet, tmp_path) -> None:
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    assert cli("render", spec, "--out", out).code == 0
    (out / "env" / "secrets.env").chmod(0o644)
    run = cli("render", spec, "--out", out)
    assert run.code == 0
    assert run.lines == [
        f"warning: {out / 'env' / 'secrets.env'}: is readable by others (mode 0644); chmod 600 it"
    ]
