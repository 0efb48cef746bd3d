"""The simulated users, one class per endpoint, and the metric entries each request adds.

`GenerateUser` (`POST /generate`) and `ChatUser` (`POST /chat_completion`) are FastHttpUsers: a
request costs the load generator several times less CPU than with `requests`, which matters on a
small machine. `OpenAIChatUser` (`POST /v1/chat/completions`) is an HttpUser: Locust's fast client
reads a streamed body in fixed-size blocks (geventhttpclient waits for a whole block), which would
delay the first token by up to a block; `requests` hands over each HTTP chunk as it arrives.

Every request is one Locust entry named after its endpoint (and `@model` when one is named),
failed as `HTTP <status>` or `transport: <error>` so each status is counted apart. Its LLM
metrics are entries of their own under the same name: request types TTFT, ITL (streamed), QUEUE
and GEN (llm-wrap's job times), and TOK/S, whose "response time" is the request's output tokens/s
and whose content size is its output tokens (so Locust sums the tokens, across workers too).
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

import requests
from locust import HttpUser, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser

from llmload import plan as plans
from llmload.llm_metrics import JobTimes, count_tokens, stream_metrics, tokens_per_s
from llmload.settings import Settings, weighted
from llmload.sse import StreamReader

logger = logging.getLogger(__name__)

PLAN_ATTRIBUTE = "llm_wrap_plan"


def plan_of(environment: Environment) -> plans.Plan:
    """The plan `on_test_start` made for this process (made now if the test start was missed)."""
    plan = getattr(environment, PLAN_ATTRIBUTE, None)
    if plan is None:
        plan = plans.build(environment.parsed_options, environment.host)
        setattr(environment, PLAN_ATTRIBUTE, plan)
    return plan


def on_test_start(environment: Environment, **_: Any) -> None:
    plan = plans.build(environment.parsed_options, environment.host)
    setattr(environment, PLAN_ATTRIBUTE, plan)
    for note in plan.notes:
        logger.warning("llm-wrap load test: %s", note)
    log = logger.error if plan.fatal else logger.info
    log(plans.describe(plan))


def label(path: str, model: str | None) -> str:
    return path if model is None else f"{path} @{model}"


def metric(environment: Environment, kind: str, name: str, value: float, size: int = 0) -> None:
    """A metric as a Locust entry: `value` goes where a response time would (ms for times)."""
    environment.events.request.fire(  # type: ignore[no-untyped-call]
        request_type=kind,
        name=name,
        response_time=value,
        response_length=size,
        exception=None,
        context={},
    )


def judge(resp: Any) -> bool:
    """Mark the request's outcome; True when it succeeded."""
    status = resp.status_code
    if not status:
        error = getattr(resp, "error", None)
        resp.failure(f"transport: {type(error).__name__ if error else 'no response'}")
        return False
    if status != 200:
        resp.failure(f"HTTP {status}")
        return False
    return True


def record_job(environment: Environment, name: str, times: JobTimes | None) -> None:
    phases = times.phases() if times is not None else None
    if phases is not None:
        metric(environment, "QUEUE", name, phases[0] * 1000)
        metric(environment, "GEN", name, phases[1] * 1000)


def record_tokens(environment: Environment, name: str, tokens: int, e2e_s: float) -> None:
    metric(environment, "TOK/S", name, tokens_per_s(tokens, e2e_s), size=tokens)


class _LLMUser:
    """What every user class shares: the plan, think time, a random source of its own."""

    abstract = True
    environment: Environment
    plan: plans.Plan
    rng: random.Random

    def on_start(self) -> None:
        self.plan = plan_of(self.environment)
        self.rng = random.Random()
        self.skip = bool(self.plan.fatal) or self.plan.settings is None

    def settings(self) -> Settings:
        """This run's settings; a user with nothing to do stops here (StopUser from a task ends
        it quietly, where from on_start Locust would log it as an error)."""
        if self.skip or self.plan.settings is None:
            raise StopUser()
        return self.plan.settings

    def wait_time(self) -> float:
        s = self.plan.settings
        return s.think.draw(self.rng) if s is not None else 0.0


class _OriginalUser(_LLMUser, FastHttpUser):
    abstract = True
    network_timeout = 600.0  # replaced by --llm-timeout in __init__
    connection_timeout = 30.0

    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options
        self.network_timeout = float(getattr(opts, "llm_timeout", None) or self.network_timeout)
        super().__init__(environment)

    def call(self, path: str, body: dict[str, Any], model: str | None) -> None:
        s = self.settings()
        if model is not None:
            body["meta"]["model"] = model
        name = label(path, model)
        with self.client.post(
            path, json=body, name=name, headers=s.headers, catch_response=True
        ) as resp:
            if not judge(resp):
                return
            try:
                content = json.loads(resp.content)["content"]
            except (ValueError, KeyError, TypeError):
                resp.failure("bad answer: no 'content'")
                return
            resp.success()
            e2e_s = resp.request_meta["response_time"] / 1000
        record_job(self.environment, name, JobTimes.from_headers(resp.headers))
        record_tokens(self.environment, name, count_tokens(str(content)), e2e_s)


class GenerateUser(_OriginalUser):
    """`POST /generate` with a prompt from the set."""

    @task
    def generate(self) -> None:
        s = self.settings()
        prompt = self.plan.prompt(self.rng)
        body = {"content": prompt.prompt, "meta": {"tokens_limit": s.max_tokens}}
        self.call("/generate", body, self.plan.model(self.rng))


class ChatUser(_OriginalUser):
    """`POST /chat_completion`: the prompt as a user turn after a system message."""

    @task
    def chat(self) -> None:
        s = self.settings()
        prompt = self.plan.prompt(self.rng)
        body: dict[str, Any] = {
            "messages": prompt.messages(),
            "meta": {"tokens_limit": s.max_tokens},
        }
        self.call("/chat_completion", body, self.plan.model(self.rng))


class OpenAIChatUser(_LLMUser, HttpUser):
    """`POST /v1/chat/completions`, streamed unless `--llm-stream off`. Skipped, with a note,
    where the target has no `/v1` or no model name is known. Weight 2: half the users, and the
    one user of a 1-user run (Locust hands users out by weight), so TTFT is measured unloaded."""

    weight = 2

    def on_start(self) -> None:
        super().on_start()
        self.models = self.plan.named_models
        self.skip = self.skip or not self.plan.serves_v1 or not self.models

    @task
    def chat(self) -> None:
        s = self.settings()
        model = weighted(self.models, self.rng)
        body: dict[str, Any] = {
            "model": model,
            "messages": self.plan.prompt(self.rng).messages(),
            "max_tokens": s.max_tokens,
        }
        if s.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            self._stream(body, label("/v1/chat/completions stream", model))
        else:
            self._whole(body, label("/v1/chat/completions", model))

    def _whole(self, body: dict[str, Any], name: str) -> None:
        s = self.settings()
        with self.client.post(
            "/v1/chat/completions",
            json=body,
            name=name,
            headers=s.headers,
            timeout=s.timeout,
            catch_response=True,
        ) as resp:
            if not judge(resp):
                return
            try:
                answer = resp.json()
                content = answer["choices"][0]["message"]["content"] or ""
                tokens = (answer.get("usage") or {}).get("completion_tokens")
            except (ValueError, KeyError, IndexError, TypeError):
                resp.failure("bad answer: not a chat completion")
                return
            resp.success()
            e2e_s = resp.request_meta["response_time"] / 1000
        record_job(self.environment, name, JobTimes.from_headers(resp.headers))
        n = tokens if isinstance(tokens, int) else count_tokens(content)
        record_tokens(self.environment, name, n, e2e_s)

    def _stream(self, body: dict[str, Any], name: str) -> None:
        s = self.settings()
        sent = time.perf_counter()
        reader = StreamReader()
        size = 0
        with self.client.post(
            "/v1/chat/completions",
            json=body,
            name=name,
            headers=s.headers,
            timeout=s.timeout,
            stream=True,
            catch_response=True,
        ) as resp:
            if not judge(resp):
                return
            try:
                for line in resp.iter_lines():
                    size += len(line) + 1
                    reader.feed(time.perf_counter() - sent, line)
            except requests.RequestException as e:
                resp.failure(f"transport: {type(e).__name__}")
                return
            end_s = time.perf_counter() - sent
            # The entry's time is the whole answer's, not the time to the status line.
            resp.request_meta["response_time"] = end_s * 1000
            resp.request_meta["response_length"] = size
            rec = reader.result()
            if rec.error is not None:
                resp.failure(f"stream error: {rec.error}")
                return
            if not rec.done:
                resp.failure("stream error: ended without [DONE]")
                return
            m = stream_metrics(rec.pieces, end_s, rec.usage_tokens)
            resp.success()
        record_job(self.environment, name, rec.timings)
        if m is None:
            return  # an empty answer: nothing to time
        metric(self.environment, "TTFT", name, m.ttft_s * 1000)
        if m.itl_s is not None:
            metric(self.environment, "ITL", name, m.itl_s * 1000)
        record_tokens(self.environment, name, m.output_tokens, m.e2e_s)
