"""Settings: contract names, defaults for everything, real env over `.env`, strict parsing."""

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.backend.config import Settings
from services.worker.config import WorkerSettings


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert (s.REDIS_PORT, s.RABBIT_MQ_PORT, s.JOB_TIMEOUT) == (6379, 5672, 300)
    w = WorkerSettings()
    assert w.MODEL_NAME == w.QUEUE_NAME and w.MODEL_BACKEND == "echo"


def test_real_env_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("REDIS_PORT=1111\nQUEUE_NAME=from-file\n")
    monkeypatch.setenv("REDIS_PORT", "2222")
    s = Settings()
    assert s.REDIS_PORT == 2222 and s.QUEUE_NAME == "from-file"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="REDIS_PORT"):
        Settings()


def test_worker_backends_require_their_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_BACKEND", "transformers")
    with pytest.raises(ValidationError, match="MODEL_PATH"):
        WorkerSettings()
    monkeypatch.setenv("MODEL_BACKEND", "openai")
    with pytest.raises(ValidationError, match="INNER_LLM_URL"):
        WorkerSettings()
    monkeypatch.setenv("MODEL_BACKEND", "nonsense")
    with pytest.raises(ValidationError, match="MODEL_BACKEND"):
        WorkerSettings()


def test_engine_args_and_aliases_parse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENGINE_ARGS", '{"enforce_eager": true}')
    monkeypatch.setenv("MODEL_NAME", "m")
    monkeypatch.setenv("MODEL_ALIASES", "a, b,m")
    w = WorkerSettings()
    assert w.ENGINE_ARGS == {"enforce_eager": True}
    assert w.model_names == ["m", "a", "b"]


def _documented(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file, commented-out ones (`# KEY=`) included."""
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=(.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def test_example_env_lists_every_setting_and_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    example = Path(__file__).resolve().parents[3] / "env" / "example.env"
    documented = _documented(example)
    settings = set(Settings.model_fields) | set(WorkerSettings.model_fields)
    assert sorted(settings - set(documented)) == [], "settings missing from env/example.env"
    assert sorted(set(documented) - settings) == [], "env/example.env names unknown settings"
    # The file as a user copies it is valid for both services.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(example.read_text())
    Settings()
    WorkerSettings()


def test_secrets_are_never_printed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in (
        ("RABBIT_MQ_PASSWORD", "pw-rabbit"),
        ("REDIS_PASSWORD", "pw-redis"),
        ("API_KEYS", "key-1,key-2"),
        ("INNER_LLM_API_KEY", "sk-upstream"),
    ):
        monkeypatch.setenv(name, value)
    shown = repr(Settings()) + str(Settings()) + repr(WorkerSettings())
    for secret in ("pw-rabbit", "pw-redis", "key-1", "sk-upstream"):
        assert secret not in shown
    s = Settings()
    assert s.api_keys == {"key-1", "key-2"} and "pw-rabbit" in s.amqp_url
    assert s.redis_password == "pw-redis"


def test_log_level_is_read_like_every_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LOG_LEVEL=DEBUG\n")
    assert Settings().LOG_LEVEL == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="LOG_LEVEL"):
        Settings()
