"""What a run sends where: the settings, the prompts, the models and their weights, and whether
the target serves OpenAI's API (`/v1`). Worked out once per Locust process when a test starts,
from the options (which the master hands to its workers) and one `GET /v1/models`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import requests

from llmload import promptset, settings
from llmload.promptset import Prompt
from llmload.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    settings: Settings | None
    prompts: list[Prompt] = field(default_factory=list)
    # (name, weight); a None name sends no model: the backend's default
    models: list[tuple[str | None, float]] = field(default_factory=lambda: [(None, 1.0)])
    serves_v1: bool = True
    notes: list[str] = field(default_factory=list)
    fatal: str | None = None  # invalid options: every user stops

    def prompt(self, rng: random.Random) -> Prompt:
        return rng.choice(self.prompts)

    def model(self, rng: random.Random) -> str | None:
        return settings.weighted(self.models, rng)

    @property
    def named_models(self) -> list[tuple[str | None, float]]:
        return [(name, w) for name, w in self.models if name is not None]


def build(options: Any, host: str | None) -> Plan:
    """The plan for this process; problems become notes (or `fatal`), never exceptions."""
    try:
        s = settings.from_options(options)
        prompts = promptset.load(s.prompts, s.prompt_sizes)
    except (ValueError, OSError) as e:
        return Plan(settings=None, fatal=str(e))
    plan = Plan(settings=s, prompts=prompts)
    if s.models:
        plan.models = list(s.models)
    if not host:
        plan.fatal = "no host: pass --host URL (or set it in the web UI)"
        return plan
    url = host.rstrip("/") + "/v1/models"
    try:
        resp = requests.get(url, headers=s.headers, timeout=10)
    except requests.RequestException as e:
        plan.notes.append(f"GET {url} failed ({type(e).__name__}); assuming /v1 is served")
        return plan
    if resp.status_code in (404, 405):
        plan.serves_v1 = False
        plan.notes.append(
            f"GET {url} answered {resp.status_code}: no OpenAI API (/v1) here, so the streamed "
            "/v1/chat/completions user is skipped (it is half the users: name GenerateUser "
            "ChatUser on the command line to give them every user)"
        )
        return plan
    if resp.status_code != 200:
        plan.notes.append(f"GET {url} answered {resp.status_code}; using the configured models")
        return plan
    if not s.models:
        plan.models = _one_name_per_queue(resp)
        if plan.models == [(None, 1.0)]:
            plan.notes.append(
                f"GET {url} lists no model (no live worker yet?): sending no model name; the "
                "/v1 user needs one and is skipped (set --llm-models)"
            )
    return plan


def _one_name_per_queue(resp: requests.Response) -> list[tuple[str | None, float]]:
    """Every queue once, by the first name listed for it (aliases would weigh it twice)."""
    try:
        data = resp.json().get("data") or []
    except (ValueError, AttributeError):
        return [(None, 1.0)]
    seen: dict[str, str] = {}
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            seen.setdefault(str(entry.get("queue") or entry["id"]), entry["id"])
    return [(name, 1.0) for name in seen.values()] or [(None, 1.0)]


def describe(plan: Plan) -> str:
    if plan.fatal:
        return f"llm-wrap load test: not started: {plan.fatal}"
    assert plan.settings is not None
    s = plan.settings
    models = ", ".join(f"{name or '(default)'}:{w:g}" for name, w in plan.models)
    think = f"{s.think.low:g}" + (f"-{s.think.high:g}" if s.think.high != s.think.low else "")
    return (
        f"llm-wrap load test: models {models}; {len(plan.prompts)} prompts "
        f"({','.join(s.prompt_sizes)}); max tokens {s.max_tokens}; /v1 "
        f"{'streamed' if s.stream else 'not streamed'}; think time {think}s"
    )
