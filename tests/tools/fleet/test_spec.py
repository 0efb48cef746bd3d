"""The schema: defaults, strictness, and the one-line messages of its field errors."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tools.fleet.load import validate_data
from tools.fleet.spec import FleetSpec, ModelSpec

MINIMAL = {"name": "llama3-8b", "path": "/data/models/llama3-8b", "gpus": [0]}


def problems(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_data(data).problems]


def model_problems(**fields: Any) -> list[str]:
    return problems({"models": [{**MINIMAL, **fields}]})


def test_smallest_spec_gets_every_default() -> None:
    spec = FleetSpec.model_validate({"models": [MINIMAL]})
    model = spec.models[0]
    assert (spec.name, spec.network, spec.redis_prefix, spec.job_timeout) == (
        "llm-wrap",
        "llm_wrap_network",
        "llm-wrap",
        300,
    )
    assert (spec.backend.host, spec.backend.port, spec.backend.replicas) == ("0.0.0.0", 8000, 1)
    assert spec.images.backend == "llmwrap/backend:0.1.0"
    assert spec.images.rabbitmq == "rabbitmq:3.13-alpine"
    assert spec.images.redis == "redis:7.2-alpine"
    assert not spec.rabbitmq.publish and not spec.redis.publish
    assert spec.backend.require_api_keys and spec.backend.public_endpoints == []
    monitoring = spec.monitoring
    assert not monitoring.enabled and monitoring.host == "127.0.0.1"
    assert (monitoring.prometheus_port, monitoring.grafana_port) == (9090, 3000)
    assert spec.images.prometheus.startswith("prom/prometheus:v")
    assert spec.images.grafana.startswith("grafana/grafana:")
    assert model.backend == "vllm" and model.max_model_len == 4096
    assert model.gpu_memory_utilisation == 0.9 and model.env == {} and model.engine_args == {}


def test_only_name_has_no_default() -> None:
    required = [n for n, f in ModelSpec.model_fields.items() if f.is_required()]
    assert required == ["name"]
    assert [n for n, f in FleetSpec.model_fields.items() if f.is_required()] == ["models"]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"models": [{**MINIMAL, "gpu": [0]}]},
            "models[0].gpu: unknown key (did you mean 'gpus'?)",
        ),
        (
            {"models": [{**MINIMAL, "gpu_memory_utilization": 0.5}]},
            "models[0].gpu_memory_utilization: unknown key "
            "(did you mean 'gpu_memory_utilisation'?)",
        ),
        ({"models": [MINIMAL], "netwrok": "x"}, "netwrok: unknown key (did you mean 'network'?)"),
        (
            {"models": [MINIMAL], "backend": {"prot": 1}},
            "backend.prot: unknown key (did you mean 'port'?)",
        ),
        ({"models": [MINIMAL], "zzz": 1}, "zzz: unknown key"),
    ],
)
def test_unknown_keys_are_errors_with_a_suggestion(data: dict[str, Any], line: str) -> None:
    assert problems(data) == [line]


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        (3, "expected a list of GPU indices or UUIDs (e.g. [0, 1]) or 'auto', got 3"),
        ("0,1", "expected a list of GPU indices or UUIDs (e.g. [0, 1]) or 'auto', got '0,1'"),
        ([0, 0], "GPU 0 is listed twice"),
        ([-1], "item 0 (-1) is not a GPU index (indices start at 0)"),
        ([True], "item 0 (True) is not a GPU index or UUID"),
        ([1.5], "item 0 (1.5) is not a GPU index or UUID"),
        (["gpu0"], "item 0 ('gpu0') is neither a GPU index nor a GPU UUID (GPU-... or MIG-...)"),
        ([0, "GPU-1234abcd"], "mixes GPU indices and UUIDs; use one kind"),
    ],
)
def test_bad_gpu_lists(gpus: object, message: str) -> None:
    assert model_problems(gpus=gpus) == [f"models[0].gpus: {message}"]


def test_gpu_ids_normalised() -> None:
    assert ModelSpec.model_validate({**MINIMAL, "gpus": ["1", 2]}).gpus == [1, 2]
    uuid = "GPU-5f4b7c1e-8d2a-4c3b-9e1f-0a1b2c3d4e5f"
    assert ModelSpec.model_validate({**MINIMAL, "gpus": [uuid]}).gpus == [uuid]
    assert ModelSpec.model_validate({**MINIMAL, "gpus": "auto"}).gpus == "auto"


@pytest.mark.parametrize("name", ["Llama", "-x", "a b", "x/y", "", "a" * 57, "llama:8b", "ünï"])
def test_bad_model_names(name: str) -> None:
    [line] = model_problems(name=name)
    assert line.startswith("models[0].name: ")


@pytest.mark.parametrize("name", ["llama3-8b", "qwen2.5-72b", "a_b", "0x", "a" * 56])
def test_good_model_names(name: str) -> None:
    assert model_problems(name=name) == []


def test_queue_name_is_checked_like_a_name() -> None:
    assert model_problems(queue="Bad Queue")[0].startswith("models[0].queue: 'Bad Queue' is not")


@pytest.mark.parametrize("path", ["models/x", "./x", "~/x", "x"])
def test_relative_model_paths_are_errors(path: str) -> None:
    assert model_problems(path=path) == [
        f"models[0].path: {path!r} is relative; give the absolute host path of the model"
    ]


def test_env_values_become_strings_and_names_are_checked() -> None:
    model = ModelSpec.model_validate({**MINIMAL, "env": {"A": 1, "B": True, "C": "x y", "D": 0.5}})
    assert model.env == {"A": "1", "B": "true", "C": "x y", "D": "0.5"}
    assert model_problems(env={"BAD-NAME": "x"}) == [
        "models[0].env: 'BAD-NAME' is not a valid environment variable name"
    ]
    assert model_problems(env={"A": [1]}) == [
        "models[0].env: A: expected a string or number, got a list"
    ]
    assert model_problems(env={"A": "two\nlines"}) == [
        "models[0].env: A: values must be one line without control characters"
    ]
    assert model_problems(env=["A=1"]) == [
        "models[0].env: expected a mapping of NAME: value, got a list"
    ]


def test_engine_args_must_be_json() -> None:
    assert model_problems(engine_args={"max-num-seqs": 1}) == [
        "models[0].engine_args: 'max-num-seqs' is not a valid engine argument name "
        "(use underscores, as in Python keyword arguments)"
    ]
    assert model_problems(engine_args={"x": {"when": datetime.date(2024, 1, 1)}}) == [
        "models[0].engine_args: x.when: datetime.date(2024, 1, 1) cannot be written as JSON; "
        "quote it"
    ]


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (
            {"max_model_len": 0},
            "models[0].max_model_len: Input should be greater than or equal to 1",
        ),
        (
            {"gpu_memory_utilisation": 1.5},
            "models[0].gpu_memory_utilisation: Input should be less than or equal to 1",
        ),
        (
            {"backend": "tgi"},
            "models[0].backend: Input should be 'vllm', 'transformers', 'echo' or 'openai'",
        ),
        ({"shm_size": "lots"}, "models[0].shm_size: 'lots' is not a size like 512m or 8g"),
        ({"inner_llm_url": "ftp://x"}, "models[0].inner_llm_url: 'ftp://x' is not an http(s) URL"),
        ({"name": 5}, "models[0].name: Input should be a valid string"),
    ],
)
def test_field_constraints(fields: dict[str, Any], line: str) -> None:
    assert model_problems(**fields) == [line]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"models": [MINIMAL], "name": "My Fleet"},
            "name: 'My Fleet' is not a valid compose project name",
        ),
        (
            {"models": [MINIMAL], "network": "bad net"},
            "network: 'bad net' is not a valid Docker network name",
        ),
        (
            {"models": [MINIMAL], "backend": {"port": 70000}},
            "backend.port: Input should be less than or equal to 65535",
        ),
        (
            {"models": [MINIMAL], "backend": {"host": "example.com"}},
            "backend.host: 'example.com' is not an IP address",
        ),
        ({"models": [MINIMAL], "backend": []}, "backend: expected a mapping, got a list"),
        ({"models": [MINIMAL], "restart": "sometimes"}, "restart: Input should be"),
        (
            {"models": [MINIMAL], "logging": {"max_size": "big"}},
            "logging.max_size: 'big' is not a size like 10m",
        ),
        (
            {"models": [MINIMAL], "monitoring": {"scrape_interval": "15"}},
            "monitoring.scrape_interval: '15' is not a duration like 15s, 1m or 15d",
        ),
        (
            {"models": [MINIMAL], "monitoring": {"retention": "1m30s"}},
            "monitoring.retention: '1m30s' is not a duration like 15s, 1m or 15d",
        ),
        (
            {"models": [MINIMAL], "monitoring": {"host": "localhost"}},
            "monitoring.host: 'localhost' is not an IP address",
        ),
        (
            {"models": [MINIMAL], "monitoring": {"grafana_port": 0}},
            "monitoring.grafana_port: Input should be greater than or equal to 1",
        ),
    ],
)
def test_fleet_settings_constraints(data: dict[str, Any], line: str) -> None:
    [got] = problems(data)
    assert got.startswith(line)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({}, "models: required: list the models to serve"),
        ({"models": []}, "models: is empty; list at least one model"),
        ({"models": {"a": 1}}, "models: expected a list of models, got a mapping"),
        ({"models": [["x"]]}, "models[0]: expected a mapping, got a list"),
        ({"models": ["x"]}, "models[0]: expected a mapping, got a string"),
        ({"models": [{"path": "/m", "gpus": [0]}]}, "models[0].name: required"),
    ],
)
def test_models_shape(data: dict[str, Any], line: str) -> None:
    assert problems(data) == [line]


def test_every_schema_problem_is_reported_at_once() -> None:
    got = problems(
        {
            "netwrok": 1,
            "models": [
                {**MINIMAL, "gpus": [0, 0]},
                {"name": "B", "path": "rel", "gpus": [1], "tensor_parallel_size": 0},
            ],
        }
    )
    assert [line.split(":")[0] for line in got] == [
        "netwrok",
        "models[0].gpus",
        "models[1].name",
        "models[1].path",
        "models[1].tensor_parallel_size",
    ]


def test_yaml_false_means_the_word() -> None:
    spec = FleetSpec.model_validate({"models": [MINIMAL], "restart": False, "memory_check": False})
    assert (spec.restart, spec.memory_check) == ("no", "off")
    assert problems({"models": [MINIMAL], "restart": True})[0].startswith("restart: Input should")
