"""secrets.env: generated once (mode 0600), reused unchanged, completed, never the defaults.

It holds the API key too (`API_KEYS`), and with monitoring Grafana's admin password.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tools.fleet import envfile


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
        "API_KEYS",
    ]
    assert secrets["RABBITMQ_DEFAULT_USER"] == secrets["RABBIT_MQ_LOGIN"]
    assert secrets["RABBITMQ_DEFAULT_PASS"] == secrets["RABBIT_MQ_PASSWORD"]
    assert secrets["RABBIT_MQ_LOGIN"] not in ("admin", "guest")
    assert len(secrets["RABBIT_MQ_PASSWORD"]) >= 32 and len(secrets["REDIS_PASSWORD"]) >= 32
    assert secrets["RABBIT_MQ_PASSWORD"] != secrets["REDIS_PASSWORD"]
    # One key, usable as is in a header and in the comma-separated list.
    assert len(secrets["API_KEYS"]) >= 32 and "," not in secrets["API_KEYS"]
    assert secrets["API_KEYS"] not in (secrets["RABBIT_MQ_PASSWORD"], secrets["REDIS_PASSWORD"])
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


OLD_SECRETS = (
    "# written before render generated an API key\n"
    "RABBIT_MQ_LOGIN=ops\nRABBIT_MQ_PASSWORD=s3cret\nREDIS_PASSWORD=r3dis\n"
    "RABBITMQ_DEFAULT_USER=ops\nRABBITMQ_DEFAULT_PASS=s3cret\n"
)


def seed(out: Path, text: str) -> Path:
    (out / "env").mkdir(parents=True)
    path = out / "env" / "secrets.env"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_api_key_added_to_an_older_secrets_file(cli, write_fleet, tmp_path, read_env) -> None:
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    path = seed(out, OLD_SECRETS)
    run = cli("render", spec, "--out", out)
    assert run.code == 0 and "wrote credentials and the API key" in run.out
    secrets = read_env(path)
    assert {k: v for k, v in secrets.items() if k != "API_KEYS"} == envfile.parse(OLD_SECRETS)
    assert len(secrets["API_KEYS"]) >= 32
    before = path.read_bytes()
    run = cli("render", spec, "--out", out)
    assert run.code == 0 and "wrote credentials" not in run.out
    assert path.read_bytes() == before


def test_api_keys_kept_as_edited(cli, write_fleet, tmp_path, read_env) -> None:
    """Ops may list their own keys: render never replaces a non-empty API_KEYS."""
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    path = seed(out, OLD_SECRETS + "API_KEYS=team-a,team-b\n")
    before = path.read_bytes()
    assert cli("render", spec, "--out", out).code == 0
    assert path.read_bytes() == before
    # An empty value counts as missing: it would silently turn the keys off.
    path.write_text(OLD_SECRETS + "API_KEYS=\n")
    assert cli("render", spec, "--out", out).code == 0
    assert len(read_env(path)["API_KEYS"]) >= 32


def test_api_keys_of_the_dotenv_file_seed_it(cli, write_fleet, tmp_path, read_env) -> None:
    """A fleet that set API_KEYS in DIR/.env (the old way) keeps its clients' keys."""
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    path = seed(out, OLD_SECRETS)
    (out / ".env").write_text("COMPOSE_PROFILES=monitoring\nAPI_KEYS=k1,k2\n")
    run = cli("render", spec, "--out", out)
    assert run.code == 0
    assert read_env(path)["API_KEYS"] == "k1,k2"
    assert run.lines == [
        f"warning: {out / '.env'}: API_KEYS copied into env/secrets.env (the backend's keys "
        "live there now); remove it here"
    ]
    # Once secrets.env has keys, .env is not read again.
    (out / ".env").write_text("API_KEYS=other\n")
    run = cli("render", spec, "--out", out)
    assert run.code == 0 and run.err == "" and read_env(path)["API_KEYS"] == "k1,k2"


def test_grafana_password_only_with_monitoring(cli, write_fleet, tmp_path, read_env) -> None:
    plain = write_fleet("models:\n  - {name: a, backend: echo}\n")
    out = tmp_path / "out"
    assert cli("render", plain, "--out", out).code == 0
    path = out / "env" / "secrets.env"
    first = read_env(path)
    assert "GF_SECURITY_ADMIN_PASSWORD" not in first
    watched = write_fleet(
        "models:\n  - {name: a, backend: echo}\nmonitoring: {enabled: true}\n", "watched.yaml"
    )
    run = cli("render", watched, "--out", out)
    assert run.code == 0 and "wrote credentials" in run.out
    second = read_env(path)
    assert list(second) == [*first, "GF_SECURITY_ADMIN_PASSWORD"]
    assert {k: second[k] for k in first} == first
    assert len(second["GF_SECURITY_ADMIN_PASSWORD"]) >= 32
    assert second["GF_SECURITY_ADMIN_PASSWORD"] not in ("admin", second["API_KEYS"])
    # Switching monitoring off again leaves the file alone.
    before = path.read_bytes()
    assert cli("render", plain, "--out", out).code == 0
    assert path.read_bytes() == before
