"""The tiny random-weight Llama, built once per test session for every real-model test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.worker.tiny_model import build

    return build(tmp_path_factory.mktemp("tiny-llama"))
