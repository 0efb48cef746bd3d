"""Settings: contract names, defaults for everything, real env over `.env`, strict parsing."""

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
