"""The load test's options: command line, then LLM_WRAP_* variables, then defaults.

Locust itself is not imported here (it monkey-patches the whole process with gevent); its parser
is configargparse's with a few web UI keywords, which `LocustLikeParser` drops. The real parser
is exercised by the runs in test_locustfile.py.
"""

import random
from typing import Any

import configargparse
import pytest
from llmload import settings

WEB_UI_KEYWORDS = ("include_in_web_ui", "is_secret", "is_required", "is_multiple")


class LocustLikeParser(configargparse.ArgumentParser):
    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        for key in WEB_UI_KEYWORDS:
            kwargs.pop(key, None)
        return super().add_argument(*args, **kwargs)


def parse(args: list[str]) -> settings.Settings:
    parser = LocustLikeParser()
    settings.add_arguments(parser)
    return settings.from_options(parser.parse_args(args))


def test_defaults_then_command_line_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = parse([])
    assert (s.models, s.max_tokens, s.stream, s.api_key) == ((), 128, True, "")
    assert s.prompts == settings.PROMPTS_FILE and s.headers == {}
    monkeypatch.setenv("LLM_WRAP_MODELS", "big:3,small")
    monkeypatch.setenv("LLM_WRAP_STREAM", "off")
    monkeypatch.setenv("LLM_WRAP_API_KEY", "k1")
    monkeypatch.setenv("LLM_WRAP_THINK_TIME", "0.5-2")
    s = parse(["--llm-max-tokens", "16"])
    assert s.models == (("big", 3.0), ("small", 1.0))
    assert (s.max_tokens, s.stream) == (16, False)
    assert s.headers == {"Authorization": "Bearer k1"}
    assert (s.think.low, s.think.high) == (0.5, 2.0)
    assert parse(["--llm-stream", "on"]).stream  # the command line wins


def test_model_names_with_colons_and_bad_values() -> None:
    assert settings.parse_models("llama3:8b, llama3:8b:2") == (
        ("llama3:8b", 1.0),
        ("llama3:8b", 2.0),
    )
    for spec in ("a:0", ":2", "a:-1"):
        with pytest.raises(ValueError, match="--llm-models"):
            settings.parse_models(spec)
    with pytest.raises(ValueError, match="--llm-think-time"):
        settings.parse_think_time("2-1")
    with pytest.raises(ValueError, match="--llm-prompt-sizes"):
        settings.parse_sizes("tiny")
    with pytest.raises(ValueError, match="--llm-max-tokens"):
        parse(["--llm-max-tokens", "0"])


def test_weights_are_honoured() -> None:
    rng = random.Random(1)
    picks = [settings.weighted([("a", 3.0), ("b", 1.0)], rng) for _ in range(4000)]
    assert 0.7 < picks.count("a") / len(picks) < 0.8
