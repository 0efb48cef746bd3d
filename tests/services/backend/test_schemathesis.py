"""Schemathesis against a running backend: no 5xx (nothing is down here, so none would be an
outage), and every answer as `/openapi.json` documents it (status, media type, body, headers).

The backend runs as in production (uvicorn, with its lifespan's connections), beside an echo
worker serving `echo` (alias `gpt-model`), JOB_TIMEOUT 2 s. Bounded and deterministic: a fixed
number of examples per operation, derandomised, no example database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode
from schemathesis.core import NotSet
from schemathesis.core.jsonschema.types import JsonValue
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import Stack, stack_env

MAX_EXAMPLES = 25
KEY = "schemathesis-key"

# Every check schemathesis has, less those this API fails by design:
# - positive_data_acceptance: parameters the schema allows but no worker honours (tool calls,
#   `logit_bias`, `stream` or `n` > 1 on /v1/jobs...) or not the model's (penalties on
#   transformers...) are a documented 400, a model name nobody serves a documented 404;
# - negative_data_rejection: pydantic's lax mode takes more than the schema's types say
#   (`true` for an integer, `"5"` for a number, `null` for a field with a default);
# - use_after_free: DELETE /v1/jobs/{id} cancels a job, it does not delete it: its record (now
#   `cancelled`) stays readable until RESULT_TTL;
# - allow_header_conformance: GET and DELETE /v1/jobs/{id} are two routes, and Starlette's 405
#   names the first one's method only;
# - unsupported_method (keyed backend only): the operator pages answer 401 to any method
#   before routing, so an unknown method on /metrics is a 401 there, not a 405.
_UNCHECKED = (
    "positive_data_acceptance",
    "negative_data_rejection",
    "use_after_free",
    "allow_header_conformance",
)


def _config(*unchecked: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "request-timeout": 10,
            "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
            "checks": {name: {"enabled": False} for name in unchecked},
        }
    )


# What a plain OpenAI client sends: the fields every worker honours. Generated bodies fill in
# every optional field, so nearly all would be a 400 (`logit_bias`, penalties...) or a 404 (a
# model nobody serves) and never reach a worker (the coverage phase still sends those).
PLAIN_FIELDS = frozenset(
    {"model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature"}
    | {"top_p", "stop", "stream", "priority", "user"}
)

BOUNDED = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def backends(
    redis_server: RedisServer, rabbit_server: RabbitServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two backends beside one echo worker: open, and keyed (API_KEYS set, no public pages)."""
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    queue = f"q-{uuid.uuid4().hex[:8]}"
    env = stack_env(redis_server.port, rabbit_server.port, f"t{uuid.uuid4().hex[:10]}")
    stack = Stack(env, tmp)
    try:
        stack.worker(queue, MODEL_NAME="echo", MODEL_ALIASES="gpt-model")
        open_url = stack.backend(QUEUE_NAME=queue, JOB_TIMEOUT=2).url
        keyed_url = stack.backend(
            QUEUE_NAME=queue, JOB_TIMEOUT=2, API_KEYS=KEY, PUBLIC_ENDPOINTS=""
        ).url
        yield open_url, keyed_url
    finally:
        stack.close()


@pytest.fixture(scope="module")
def api_schema(backends: tuple[str, str]) -> OpenApiSchema:
    loaded = schemathesis.openapi.from_url(
        f"{backends[0]}/openapi.json", config=_config(*_UNCHECKED)
    )
    loaded.hook(map_case)
    return loaded


@pytest.fixture(scope="module")
def keyed_api_schema(backends: tuple[str, str]) -> OpenApiSchema:
    """The keyed backend's schema (read with the key), for calls made without one."""
    url = f"{backends[1]}/openapi.json"
    config = _config(*_UNCHECKED, "unsupported_method")
    return schemathesis.openapi.from_url(url, config=config, headers={"X-API-Key": KEY})


def map_case(context: schemathesis.HookContext, case: Case[Any]) -> Case[Any]:
    """A valid generated body asks the model the worker serves, with what every worker honours
    (invalid ones stay as they are: they test the refusals)."""
    if case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
        if not isinstance(case.body, bytes | NotSet):
            case.body = served(case.body)
    return case


def served(body: JsonValue) -> JsonValue:
    if not isinstance(body, dict):
        return body
    if "model" in body:  # OpenAI's
        return {k: v for k, v in body.items() if k in PLAIN_FIELDS} | {"model": "echo"}
    meta = body.get("meta")
    if isinstance(meta, dict):  # the original's: meta.model left to the default
        return body | {"meta": {k: v for k, v in meta.items() if k != "model"}}
    return body


schema = schemathesis.pytest.from_fixture("api_schema")
keyed_schema = schemathesis.pytest.from_fixture("keyed_api_schema")


@schema.parametrize()
@BOUNDED
def test_every_operation_answers_as_documented(case: Case[Any]) -> None:
    case.call_and_validate()


@keyed_schema.parametrize()
@settings(BOUNDED, max_examples=5)
def test_every_operation_without_a_key_answers_as_documented(case: Case[Any]) -> None:
    """The 401s (and /metrics' JSON 401 beside its text/plain 200) are in the schema."""
    case.call_and_validate()


def test_job_lifecycles_answer_as_documented(api_schema: OpenApiSchema) -> None:
    """Sequences linked through POST /v1/jobs' `Location`: GET and DELETE of real jobs (200,
    409 once finished) as well as of unknown ones."""
    machine = api_schema.as_state_machine()
    machine.run(settings=settings(BOUNDED, max_examples=10, stateful_step_count=4))
