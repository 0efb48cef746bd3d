"""The load test's own options: Locust command-line arguments, each with an environment variable.

They are added to Locust's parser, so they show in the web UI's start form, travel from master to
workers in distributed mode, and can be set in a `locust.conf` like Locust's own. Precedence is
Locust's: command line, then environment, then config file, then the default here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmload.promptset import PROMPTS_FILE, SIZES

ON = ("on", "true", "yes", "1")
OFF = ("off", "false", "no", "0")


def add_arguments(parser: Any) -> None:
    """Add the options to Locust's parser (`events.init_command_line_parser`). Not in an
    argument group: only the parser's own add_argument takes Locust's web UI keywords."""
    group = parser
    group.add_argument(
        "--llm-api-key",
        env_var="LLM_WRAP_API_KEY",
        default="",
        is_secret=True,
        help="API key sent as 'Authorization: Bearer KEY' (none when empty)",
    )
    group.add_argument(
        "--llm-models",
        env_var="LLM_WRAP_MODELS",
        default="",
        help="models and weights, 'name:weight,name:weight' (weight 1 when left out); empty: "
        "each model GET /v1/models lists (one name per queue), else the backend's default model",
    )
    group.add_argument(
        "--llm-max-tokens",
        env_var="LLM_WRAP_MAX_TOKENS",
        type=int,
        default=128,
        help="tokens each answer may have (meta.tokens_limit, max_tokens)",
    )
    group.add_argument(
        "--llm-stream",
        env_var="LLM_WRAP_STREAM",
        default="on",
        choices=[*ON, *OFF],
        help="the /v1 user streams (on: time to first token, inter-token latency) or not",
    )
    group.add_argument(
        "--llm-think-time",
        env_var="LLM_WRAP_THINK_TIME",
        default="0",
        help="seconds a user waits between its requests: N, or MIN-MAX for a uniform draw",
    )
    group.add_argument(
        "--llm-prompts",
        env_var="LLM_WRAP_PROMPTS",
        default="",
        help="prompt set, JSON lines with a 'prompt' field (and optional 'size', 'system'); "
        "empty: the set shipped in loadtests/prompts.jsonl",
    )
    group.add_argument(
        "--llm-prompt-sizes",
        env_var="LLM_WRAP_PROMPT_SIZES",
        default=",".join(SIZES),
        help="prompt sizes to draw from: short (<50 words), medium (150-600), long (1,000-2,000), "
        "xlong (3,500-5,000)",
    )
    group.add_argument(
        "--llm-timeout",
        env_var="LLM_WRAP_TIMEOUT",
        type=float,
        default=600.0,
        help="seconds a request may take before it counts as a transport error",
    )


@dataclass(frozen=True)
class ThinkTime:
    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return self.low if self.high == self.low else rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class Settings:
    api_key: str
    models: tuple[tuple[str, float], ...]  # empty: discover them
    max_tokens: int
    stream: bool
    think: ThinkTime
    prompts: Path
    prompt_sizes: tuple[str, ...]
    timeout: float

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def parse_models(spec: str) -> tuple[tuple[str, float], ...]:
    """'a:3,b' -> (('a', 3.0), ('b', 1.0)). The weight is what follows the last colon when that
    is a number, so names with colons of their own ('llama3:8b', 'llama3:8b:2') work too."""
    models = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, weight = item.rpartition(":")
        try:
            value = float(weight)
        except ValueError:
            name, value = item, 1.0
        if not name or not value > 0:
            raise ValueError(f"--llm-models: {item!r}: want NAME or NAME:WEIGHT, weight above 0")
        models.append((name, value))
    return tuple(models)


def parse_think_time(spec: str) -> ThinkTime:
    """'0', '1.5' or '0.5-2' (seconds)."""
    low, _, high = spec.strip().partition("-")
    try:
        think = ThinkTime(float(low), float(high or low))
    except ValueError:
        raise ValueError(f"--llm-think-time: {spec!r}: want N or MIN-MAX (seconds)") from None
    if not 0 <= think.low <= think.high:
        raise ValueError(f"--llm-think-time: {spec!r}: want 0 <= MIN <= MAX")
    return think


def parse_switch(name: str, value: object) -> bool:
    text = str(value).strip().lower()
    if text in ON or text in OFF:
        return text in ON
    raise ValueError(f"{name}: {value!r}: want on or off")


def parse_sizes(spec: str) -> tuple[str, ...]:
    sizes = tuple(filter(None, (s.strip() for s in spec.split(","))))
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        raise ValueError(f"--llm-prompt-sizes: {spec!r}: want some of {', '.join(SIZES)}")
    return sizes


def from_options(options: Any) -> Settings:
    """Settings from Locust's parsed options; ValueError naming the option when one is wrong."""
    max_tokens = int(options.llm_max_tokens)
    if max_tokens < 1:
        raise ValueError(f"--llm-max-tokens: {max_tokens}: want at least 1")
    timeout = float(options.llm_timeout)
    if not timeout > 0:
        raise ValueError(f"--llm-timeout: {timeout}: want more than 0 seconds")
    prompts = Path(options.llm_prompts) if options.llm_prompts else PROMPTS_FILE
    if not prompts.is_file():
        raise ValueError(f"--llm-prompts: {prompts}: no such file")
    return Settings(
        api_key=str(options.llm_api_key or ""),
        models=parse_models(str(options.llm_models or "")),
        max_tokens=max_tokens,
        stream=parse_switch("--llm-stream", options.llm_stream),
        think=parse_think_time(str(options.llm_think_time)),
        prompts=prompts,
        prompt_sizes=parse_sizes(str(options.llm_prompt_sizes)),
        timeout=timeout,
    )


def weighted(choices: Sequence[tuple[str | None, float]], rng: random.Random) -> str | None:
    names = [name for name, _ in choices]
    return rng.choices(names, weights=[weight for _, weight in choices])[0]
