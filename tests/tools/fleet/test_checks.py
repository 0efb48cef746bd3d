"""Rules across fields and models, reported with field paths, all at once."""

from __future__ import annotations

from typing import Any

import pytest

from tools.fleet.build import build
from tools.fleet.inventory import parse
from tools.fleet.problems import FleetError

INVENTORY = parse(
    "\n".join(
        f"{i}, GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd, NVIDIA H100 80GB HBM3, 81559"
        for i in range(8)
    ),
    "gpus.csv",
)


def m(name: str, gpus: Any = None, **fields: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"name": name, "path": f"/models/{name}", **fields}
    if gpus is not None:
        model["gpus"] = gpus
    return model


def errors(tmp_path, models: list[dict[str, Any]], inventory=None, **fleet: Any) -> list[str]:
    import yaml

    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({**fleet, "models": models}, sort_keys=False), encoding="utf-8")
    try:
        result = build(path, inventory)
    except FleetError as e:
        return [str(p) for p in e.problems if not p.warning]
    assert result.spec is not None
    return []


def test_gpu_given_twice(tmp_path) -> None:
    got = errors(tmp_path, [m("a", [0, 3]), m("b", [3])])
    assert got == ["models[1].gpus: GPU 3 is already given to models[0]"]


def test_uuid_given_twice(tmp_path) -> None:
    uuid = "GPU-5f4b7c1e-8d2a-4c3b-9e1f-0a1b2c3d4e5f"
    assert errors(tmp_path, [m("a", [uuid]), m("b", [uuid])]) == [
        f"models[1].gpus: GPU {uuid} is already given to models[0]"
    ]


def test_mixed_ids_across_the_fleet(tmp_path) -> None:
    got = errors(tmp_path, [m("a", [0]), m("b", ["GPU-5f4b7c1e-8d2a"])])
    assert got == [
        "models[1].gpus: uses GPU UUIDs but models[0] uses GPU indices; "
        "use one kind across the fleet"
    ]


@pytest.mark.parametrize(
    ("model", "line"),
    [
        (
            m("a", [0, 1], tensor_parallel_size=4),
            "models[0].tensor_parallel_size: 4 does not match the 2 GPUs in gpus",
        ),
        (
            m("a", [0, 1, 2], tensor_parallel_size=2, engine_args={"pipeline_parallel_size": 2}),
            "models[0].tensor_parallel_size: 2 x pipeline_parallel_size 2 does not match "
            "the 3 GPUs in gpus",
        ),
        (
            m("a", [0], engine_args={"pipeline_parallel_size": 0}),
            "models[0].engine_args.pipeline_parallel_size: must be a positive integer",
        ),
        (
            m("a", [], backend="transformers", tensor_parallel_size=2),
            "models[0].tensor_parallel_size: parallelism needs GPUs; CPU models run with 1",
        ),
        (
            m("a", "auto", gpu_count=4, tensor_parallel_size=2),
            "models[0].tensor_parallel_size: 2 does not match the 4 gpu_count",
        ),
    ],
)
def test_parallelism_must_match_gpus(tmp_path, model, line) -> None:
    assert line in errors(tmp_path, [model], INVENTORY)


def test_tensor_parallel_defaults_to_gpu_count(tmp_path) -> None:
    assert (
        errors(
            tmp_path,
            [m("a", [0, 1, 2, 3]), m("b", [4, 5], engine_args={"pipeline_parallel_size": 2})],
        )
        == []
    )


@pytest.mark.parametrize(
    ("model", "line"),
    [
        (
            {"name": "a", "gpus": [0]},
            "models[0].path: required for backend vllm: the model directory",
        ),
        (
            {"name": "a", "path": "/m"},
            "models[0].gpus: required for backend vllm: list GPUs or say 'auto'",
        ),
        (
            {"name": "a", "path": "/m", "gpus": []},
            "models[0].gpus: required for backend vllm: list GPUs or say 'auto'",
        ),
        (
            {"name": "a", "backend": "transformers"},
            "models[0].path: required for backend transformers: the model directory",
        ),
        (
            {"name": "a", "backend": "echo", "gpus": [0]},
            "models[0].gpus: backend echo uses no GPU; remove gpus",
        ),
        (
            {"name": "a", "backend": "openai"},
            "models[0].inner_llm_url: required for backend openai",
        ),
        (
            {"name": "a", "backend": "echo", "inner_llm_url": "http://x"},
            "models[0].inner_llm_url: only used by backend openai",
        ),
        (
            {"name": "a", "path": "/m", "gpus": [0], "gpu_count": 2},
            "models[0].gpu_count: only used with gpus: auto",
        ),
    ],
)
def test_backend_needs(tmp_path, model, line) -> None:
    assert errors(tmp_path, [model]) == [line]


def test_cpu_backends_need_no_gpu_or_path(tmp_path) -> None:
    assert (
        errors(
            tmp_path,
            [
                {"name": "echo", "backend": "echo"},
                {"name": "proxy", "backend": "openai", "inner_llm_url": "http://vllm:8000/v1"},
                {"name": "tiny", "backend": "transformers", "path": "/m/tiny", "gpus": []},
                {"name": "tiny-gpu", "backend": "transformers", "path": "/m/tiny", "gpus": [1]},
            ],
        )
        == []
    )


def test_duplicate_names_and_queues(tmp_path) -> None:
    got = errors(
        tmp_path,
        [m("a", [0]), m("a", [1]), m("b", [2], queue="a"), m("c", [3]), m("d", [4], queue="c")],
    )
    assert got == [
        "models[1].name: 'a' is already used by models[0]",
        "models[2].queue: queue 'a' is already used by models[0]",
        "models[4].queue: queue 'c' is already used by models[3]",
    ]


def test_default_queue_clash_names_the_model(tmp_path) -> None:
    got = errors(tmp_path, [m("a", [0], queue="b"), m("b", [1])])
    assert got == ["models[1].name: queue 'b' (its default queue) is already used by models[0]"]


def test_reserved_env_and_engine_args(tmp_path) -> None:
    got = errors(
        tmp_path,
        [
            m(
                "a",
                [0],
                env={"TOKENS_LEN": "5", "REDIS_HOST": "x", "OK": "1"},
                engine_args={"max_model_len": 5, "gpu_memory_utilization": 0.5},
            )
        ],
    )
    assert got == [
        "models[0].env.TOKENS_LEN: is set by the generator; set it with max_model_len",
        "models[0].env.REDIS_HOST: is set by the generator",
        "models[0].engine_args.max_model_len: set it with max_model_len",
        "models[0].engine_args.gpu_memory_utilization: set it with gpu_memory_utilisation",
    ]


def test_host_ports_must_not_clash(tmp_path) -> None:
    got = errors(
        tmp_path,
        [m("a", [0])],
        backend={"port": 8000, "replicas": 4},
        rabbitmq={"publish": True, "port": 8002},
        redis={"publish": True, "port": 8002},
    )
    assert got == [
        "rabbitmq.port: host port 8002 is already used by backend.port",
        "redis.port: host port 8002 is already used by backend.port",
    ]
    assert errors(
        tmp_path,
        [m("a", [0])],
        rabbitmq={"publish": True, "port": 7000},
        redis={"publish": True, "port": 7000},
    ) == ["redis.port: host port 7000 is already used by rabbitmq.port"]
    # Unpublished ports cannot clash.
    assert errors(tmp_path, [m("a", [0])], rabbitmq={"port": 8000}) == []
    assert errors(tmp_path, [m("a", [0])], backend={"port": 65535, "replicas": 2}) == [
        "backend.replicas: 2 replicas from port 65535 pass 65535"
    ]


def test_monitoring_ports_must_not_clash(tmp_path) -> None:
    got = errors(
        tmp_path,
        [m("a", [0])],
        backend={"port": 3000},
        redis={"publish": True, "port": 9090},
        monitoring={"enabled": True},
    )
    assert got == [
        "monitoring.prometheus_port: host port 9090 is already used by redis.port",
        "monitoring.grafana_port: host port 3000 is already used by backend.port",
    ]
    assert errors(tmp_path, [m("a", [0])], monitoring={"enabled": True, "grafana_port": 9090}) == [
        "monitoring.grafana_port: host port 9090 is already used by monitoring.prometheus_port"
    ]
    # Not rendered, so not published: no clash.
    assert errors(tmp_path, [m("a", [0])], backend={"port": 3000}) == []


def test_gpus_absent_from_inventory(tmp_path) -> None:
    got = errors(tmp_path, [m("a", [7, 8]), m("b", ["GPU-ffffffff"])], INVENTORY)
    assert "models[0].gpus: GPU 8 is not in the inventory (gpus.csv lists GPUs 0-7)" in got
    assert (
        "models[1].gpus: GPU GPU-ffffffff is not in the inventory (gpus.csv lists GPUs 0-7)" in got
    )


def test_inventory_uuids_are_known(tmp_path) -> None:
    uuid = INVENTORY.gpus[3].uuid
    assert errors(tmp_path, [m("a", [uuid])], INVENTORY) == []


def test_all_problems_of_all_kinds_at_once(tmp_path) -> None:
    got = errors(
        tmp_path,
        [m("a", [0, 1], tensor_parallel_size=3), m("b", [1], typo=1), m("c", [1]), {"name": "d"}],
        INVENTORY,
        backend={"port": "x"},
    )
    assert got == [
        "backend.port: Input should be a valid integer, unable to parse string as an integer",
        "models[0].tensor_parallel_size: 3 does not match the 2 GPUs in gpus",
        "models[1].typo: unknown key",
        "models[2].gpus: GPU 1 is already given to models[0]",
        "models[3].path: required for backend vllm: the model directory",
        "models[3].gpus: required for backend vllm: list GPUs or say 'auto'",
    ]
