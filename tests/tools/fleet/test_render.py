"""Rendered output: golden files, determinism, secrets, and the compose file proven valid.

Regenerate the golden files after an intended change with
`FLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/tools/fleet/test_render.py`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).parent / "data"
GOLDEN = sorted(p.name for p in (DATA / "golden").iterdir())
VALID = sorted((DATA / "valid").glob("*.yaml"))
CONTRACT_WORKER_ENV = [
    "MODEL_NAME",
    "QUEUE_NAME",
    "MODEL_BACKEND",
    "MODEL_PATH",
    "TOKENS_LEN",
    "GPU_MEMORY_UTILISATION",
    "TENSOR_PARALLEL_SIZE",
    "NVIDIA_VISIBLE_DEVICES",
    "WORKER_CONCURRENCY",
    "ENGINE_ARGS",
    "RABBIT_MQ_HOST",
    "RABBIT_MQ_PORT",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PREFIX",
    # Not a name the original had: the port Prometheus scrapes (monitoring.py).
    "WORKER_METRICS_PORT",
]
BACKEND_ENV = [
    "RABBIT_MQ_HOST",
    "RABBIT_MQ_PORT",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PREFIX",
    "QUEUE_NAME",
    "JOB_TIMEOUT",
    "API_PORT",
    "PUBLIC_ENDPOINTS",
]


def worker_env_keys(model: dict) -> list[str]:
    """A worker env file's keys, in order, for a model as the spec gives it.

    A `vllm` model gets `WORKER_CONCURRENCY` only when `worker_concurrency` is set: unset, the
    worker holds as many jobs as its engine runs at once (`max_num_seqs`).
    """
    keys = list(CONTRACT_WORKER_ENV)
    if model.get("backend", "vllm") == "vllm" and "worker_concurrency" not in model:
        keys.remove("WORKER_CONCURRENCY")
    if model.get("backend") == "openai":
        keys.insert(keys.index("ENGINE_ARGS") + 1, "INNER_LLM_URL")
    return [*keys, *model.get("env", {})]


def tree(root: Path) -> dict[str, bytes]:
    """Every generated file under root except the credentials and the certificates (made at
    the first render, random like the passwords; tests/tools/fleet/test_hosts.py checks them)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "secrets.env" and p.suffix != ".pem"
    }


def seed_secrets(out: Path, source: Path) -> None:
    (out / "env").mkdir(parents=True)
    shutil.copy(source, out / "env" / "secrets.env")
    (out / "env" / "secrets.env").chmod(0o600)


def render_case(cli, case: str, out: Path):
    src = DATA / "golden" / case
    seed_secrets(out, src / "secrets.env")
    args = ["render", src / "fleet.yaml", "--out", out]
    if (src / "gpus.csv").exists():
        args += ["--inventory", src / "gpus.csv"]
    return cli(*args)


@pytest.mark.parametrize("case", GOLDEN)
def test_golden(case: str, cli, tmp_path: Path) -> None:
    run = render_case(cli, case, tmp_path / "out")
    assert run.code == 0 and run.err == "", run.err
    expected = DATA / "golden" / case / "expected"
    if os.environ.get("FLEET_UPDATE_GOLDEN"):
        shutil.rmtree(expected, ignore_errors=True)
        shutil.copytree(
            tmp_path / "out", expected, ignore=shutil.ignore_patterns("secrets.env", "*.pem")
        )
    assert tree(tmp_path / "out") == tree(expected)


@pytest.mark.parametrize("case", GOLDEN)
def test_golden_output_is_valid_compose(
    case: str, cli, tmp_path: Path, compose_schema, compose_config
) -> None:
    out = tmp_path / "out"
    assert render_case(cli, case, out).code == 0
    compose_schema.validate(yaml.safe_load((out / "docker-compose.yml").read_text()))
    done = compose_config(out, "-q")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("spec", VALID, ids=lambda p: p.stem)
def test_valid_fleets_render_to_valid_compose(
    spec: Path, cli, tmp_path: Path, compose_schema, compose_config, load_compose, read_env
) -> None:
    out = tmp_path / "out"
    inventory = DATA / "gpus-8xh100.csv"
    run = cli("render", spec, "--out", out, "--inventory", inventory)
    assert run.code == 0, run.err
    compose = load_compose(out)
    compose_schema.validate(compose)
    done = compose_config(out, "-q")
    assert done.returncode == 0, done.stderr
    source = yaml.safe_load(spec.read_text())
    workers = [f"worker-{m['name']}" for m in source["models"]]
    assert sorted(compose["services"]) == sorted(["backend", "rabbitmq", "redis", *workers])
    for model in source["models"]:
        env = read_env(out / "env" / f"worker-{model['name']}.env")
        assert list(env) == worker_env_keys(model)
        assert env["MODEL_NAME"] == model["name"]
        device_ids = (
            compose["services"][f"worker-{model['name']}"]
            .get("deploy", {})
            .get("resources", {})
            .get("reservations", {})
            .get("devices", [{}])
        )[0].get("device_ids", [])
        assert env["NVIDIA_VISIBLE_DEVICES"] == ",".join(device_ids)


def test_service_shape(cli, tmp_path: Path, load_compose) -> None:
    out = tmp_path / "out"
    assert render_case(cli, "full", out).code == 0
    compose = load_compose(out)
    services = compose["services"]
    assert compose["name"] == "prod-fleet"
    assert compose["networks"] == {"prod_net": {"name": "prod_net", "driver": "bridge"}}
    assert set(compose["volumes"]) == {
        "rabbitmq-data",
        "redis-data",
        "prometheus-data",
        "grafana-data",
    }
    for name, svc in services.items():
        assert svc["networks"] == ["prod_net"], name
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc["restart"] == "on-failure"
        assert svc["logging"] == {
            "driver": "json-file",
            "options": {"max-size": "50m", "max-file": "5"},
        }
        if name in ("prometheus", "grafana"):
            assert svc["profiles"] == ["monitoring"], name
            continue
        assert "profiles" not in svc, name
        assert "env/secrets.env" in svc["env_file"]
        if name not in ("rabbitmq", "redis"):
            assert svc["depends_on"] == {
                "rabbitmq": {"condition": "service_healthy"},
                "redis": {"condition": "service_healthy"},
            }
    assert services["rabbitmq"]["healthcheck"]["test"] == [
        "CMD",
        "rabbitmq-diagnostics",
        "-q",
        "check_port_connectivity",  # healthy only once AMQP is accepted, not when Erlang is up
    ]
    assert services["rabbitmq"]["volumes"] == ["rabbitmq-data:/var/lib/rabbitmq"]
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    assert services["redis"]["healthcheck"]["test"] == [
        "CMD-SHELL",
        'redis-cli -a "$$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG',
    ]
    assert '--requirepass "$$REDIS_PASSWORD"' in services["redis"]["command"][2]
    assert services["backend"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "services.backend.healthcheck",
    ]
    assert services["backend"]["ports"] == ["127.0.0.1:9000-9002:8000"]
    assert services["backend"]["deploy"] == {"replicas": 3}
    assert services["rabbitmq"]["ports"] == ["127.0.0.1:15672:5672"]
    assert services["redis"]["ports"] == ["127.0.0.1:16379:6379"]
    mixtral = services["worker-mixtral-8x7b"]
    assert mixtral["healthcheck"]["test"] == ["CMD", "python", "-m", "services.worker.healthcheck"]
    assert mixtral["healthcheck"]["start_period"] == "1200s"
    assert mixtral["volumes"] == [
        {
            "type": "bind",
            "source": "/srv/models/Mixtral 8x7B $$v0.1",
            "target": "/models/mixtral-8x7b",
            "read_only": True,
            "bind": {"create_host_path": False},
        }
    ]
    [device] = mixtral["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert all(isinstance(d, str) for d in device["device_ids"]) and len(device["device_ids"]) == 4
    assert "deploy" not in services["worker-echo"] and "volumes" not in services["worker-echo"]
    assert services["worker-echo"]["image"] == "registry.local:5000/llmwrap/worker-cpu:0.1.0"
    assert services["worker-phi-3-mini"]["image"] == "registry.local:5000/custom/worker-phi:1.0"


def test_defaults_publish_nothing_but_the_api(cli, tmp_path: Path, load_compose, read_env) -> None:
    out = tmp_path / "out"
    assert render_case(cli, "minimal", out).code == 0
    services = load_compose(out)["services"]
    assert [name for name, svc in services.items() if "ports" in svc] == ["backend"]
    assert services["backend"]["ports"] == ["0.0.0.0:8000:8000"]
    worker = services["worker-llama3-8b"]
    assert worker["shm_size"] == "1g" and worker["image"] == "llmwrap/worker-gpu:0.1.0"
    assert worker["healthcheck"]["start_period"] == "600s"
    assert worker["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}
    ]
    env = read_env(out / "env" / "worker-llama3-8b.env")
    assert list(env) == [k for k in CONTRACT_WORKER_ENV if k != "WORKER_CONCURRENCY"]
    assert env["MODEL_PATH"] == "/models/llama3-8b" and env["NVIDIA_VISIBLE_DEVICES"] == "0"
    assert env["ENGINE_ARGS"] == "{}" and env["TENSOR_PARALLEL_SIZE"] == "1"
    backend = read_env(out / "env" / "backend.env")
    assert list(backend) == BACKEND_ENV
    assert backend["QUEUE_NAME"] == "llama3-8b" and backend["API_PORT"] == "8000"
    assert backend["JOB_TIMEOUT"] == "300"


def test_worker_concurrency_follows_the_engine_for_vllm(cli, write_fleet, tmp_path, read_env):
    """vLLM: no `WORKER_CONCURRENCY` unless set (the worker follows `max_num_seqs`)."""
    spec = write_fleet(
        """
        models:
          - {name: engine, path: /m/a, gpus: [0], engine_args: {max_num_seqs: 128}}
          - {name: capped, path: /m/b, gpus: [1], worker_concurrency: 8}
          - {name: tf, backend: transformers, path: /m/c}
          - {name: tf-set, backend: transformers, path: /m/d, worker_concurrency: 2}
          - {name: echo, backend: echo}
          - {name: proxy, backend: openai, inner_llm_url: http://llm.internal/v1}
        """
    )
    out = tmp_path / "out"
    assert cli("render", spec, "--out", out).code == 0
    got = {
        name: read_env(out / "env" / f"worker-{name}.env").get("WORKER_CONCURRENCY")
        for name in ("engine", "capped", "tf", "tf-set", "echo", "proxy")
    }
    assert got == {
        "engine": None,
        "capped": "8",
        "tf": "1",
        "tf-set": "2",
        "echo": "16",
        "proxy": "16",
    }
    engine = read_env(out / "env" / "worker-engine.env")
    assert list(engine) == worker_env_keys({})
    capped = read_env(out / "env" / "worker-capped.env")
    assert list(capped) == CONTRACT_WORKER_ENV


def test_env_values_reach_containers_exactly(cli, tmp_path: Path, compose_config) -> None:
    """Compose's own parser reads back every value as written in the spec."""
    out = tmp_path / "out"
    assert render_case(cli, "full", out).code == 0
    done = compose_config(out, "--format", "json")
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)["services"]["worker-mixtral-8x7b"]["environment"]
    spec = yaml.safe_load((DATA / "golden" / "full" / "fleet.yaml").read_text())["models"][0]
    # `config` prints a literal `$` as `$$` (its own escape).
    got = {k: v.replace("$$", "$") for k, v in env.items()}
    assert got["QUOTE_MIX"] == spec["env"]["QUOTE_MIX"]
    assert got["VLLM_LOGGING_LEVEL"] == "WARNING # not a comment"
    assert json.loads(got["ENGINE_ARGS"]) == spec["engine_args"]
    assert got["REDIS_PASSWORD"] == "golden-redis-password"


def backend_environment(compose_config, out: Path, **env: str) -> dict[str, str]:
    done = compose_config(out, "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["services"]["backend"]["environment"]


def test_backend_reads_the_generated_api_key(cli, tmp_path: Path, compose_config) -> None:
    """`require_api_keys: true`: the keys of secrets.env, with nothing to set in the shell."""
    out = tmp_path / "out"
    assert render_case(cli, "full", out).code == 0
    compose = (out / "docker-compose.yml").read_text()
    assert "API_KEYS" not in compose and "golden-api-key" not in compose
    for shell in ({}, {"API_KEYS": ""}, {"API_KEYS": "from-the-shell"}):
        env = backend_environment(compose_config, out, **shell)
        assert env["API_KEYS"] == "golden-api-key,second-key", shell


def test_api_key_enforced_by_default(cli, tmp_path: Path, compose_config, read_env) -> None:
    """The smallest spec: the generated key is required, and /metrics and /docs are keyed too."""
    out = tmp_path / "out"
    assert render_case(cli, "minimal", out).code == 0
    env = backend_environment(compose_config, out)
    assert env["API_KEYS"] == "golden-api-key" and env["PUBLIC_ENDPOINTS"] == ""
    assert read_env(out / "env" / "backend.env")["PUBLIC_ENDPOINTS"] == ""


def test_api_key_opt_out(cli, write_fleet, tmp_path: Path, compose_config) -> None:
    """`require_api_keys: false`: the key is generated but the backend gets API_KEYS empty."""
    spec = write_fleet(
        "backend: {require_api_keys: false}\nmodels:\n  - {name: a, backend: echo}\n"
    )
    out = tmp_path / "out"
    assert cli("render", spec, "--out", out).code == 0
    assert "API_KEYS=" in (out / "env" / "secrets.env").read_text()
    compose = (out / "docker-compose.yml").read_text()
    assert "backend.require_api_keys is false" in compose
    assert backend_environment(compose_config, out)["API_KEYS"] == ""


def test_public_endpoints_in_a_fixed_order(cli, write_fleet, tmp_path: Path, read_env) -> None:
    spec = write_fleet(
        "backend: {public_endpoints: [docs, metrics]}\nmodels:\n  - {name: a, backend: echo}\n"
    )
    out = tmp_path / "out"
    assert cli("render", spec, "--out", out).code == 0
    assert read_env(out / "env" / "backend.env")["PUBLIC_ENDPOINTS"] == "metrics,docs"


def test_render_is_deterministic(cli, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    render_case(cli, "full", first)
    render_case(cli, "full", second)
    assert tree(first) == tree(second)
    again = cli("render", DATA / "golden" / "full" / "fleet.yaml", "--out", first)
    assert again.code == 0 and "0 files written" in again.out
    assert tree(first) == tree(second)


def test_nothing_written_on_error(cli, write_fleet, tmp_path) -> None:
    bad = write_fleet(
        "models:\n  - {name: a, path: /m, gpus: [0]}\n  - {name: b, path: /m, gpus: [0]}\n"
    )
    out = tmp_path / "out"
    run = cli("render", bad, "--out", out)
    assert run.code == 2 and run.out == "" and not out.exists()
    good = write_fleet("models:\n  - {name: a, backend: echo}\n", "good.yaml")
    assert cli("render", good, "--out", out).code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert cli("render", bad, "--out", out).code == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_stale_worker_env_files_are_removed(cli, write_fleet, tmp_path) -> None:
    out = tmp_path / "out"
    two = write_fleet("models:\n  - {name: a, backend: echo}\n  - {name: b, backend: echo}\n")
    assert cli("render", two, "--out", out).code == 0
    one = write_fleet("models:\n  - {name: a, backend: echo}\n", "one.yaml")
    run = cli("render", one, "--out", out)
    assert run.code == 0 and "removed stale" in run.out
    assert sorted(p.name for p in (out / "env").iterdir()) == [
        "backend.env",
        "secrets.env",
        "worker-a.env",
    ]


def test_out_is_a_file(cli, write_fleet, tmp_path) -> None:
    spec = write_fleet("models:\n  - {name: a, backend: echo}\n")
    (tmp_path / "file").write_text("x")
    run = cli("render", spec, "--out", tmp_path / "file")
    assert run.code == 2 and run.lines == [f"{tmp_path / 'file'}: exists and is not a directory"]


def test_tensor_parallel_shared_memory(cli, write_fleet, tmp_path, load_compose) -> None:
    spec = write_fleet(
        """
        models:
          - {name: tp4, path: /m/a, gpus: [0, 1, 2, 3]}
          - {name: cpu, backend: transformers, path: /m/b}
          - {name: own, path: /m/c, gpus: [4], shm_size: 4g}
        """
    )
    assert cli("render", spec, "--out", tmp_path / "out").code == 0
    services = load_compose(tmp_path / "out")["services"]
    assert services["worker-tp4"]["shm_size"] == "8g"
    assert services["worker-cpu"]["shm_size"] == "1g"
    assert services["worker-own"]["shm_size"] == "4g"
    assert services["worker-cpu"]["image"] == "llmwrap/worker-cpu:0.1.0"


def test_every_service_is_hardened(cli, tmp_path: Path, load_compose) -> None:
    """All capabilities dropped, no privilege gain; read-only roots where the image allows."""
    out = tmp_path / "out"
    assert render_case(cli, "full", out).code == 0
    services = load_compose(out)["services"]
    infra_caps = ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"]
    expected = {
        # name: (cap_add, read_only, tmpfs)
        "rabbitmq": (infra_caps, None, None),
        "redis": (infra_caps, True, ["/tmp"]),
        "backend": (None, True, ["/tmp"]),
        "worker-mixtral-8x7b": (None, None, None),  # GPU: compiler caches in $HOME and /tmp
        "worker-phi-3-mini": (None, None, None),
        "worker-gpt-proxy": (None, True, ["/tmp"]),
        "worker-echo": (None, True, ["/tmp"]),
        "prometheus": (None, True, None),
        "grafana": (None, True, ["/tmp"]),
    }
    assert set(services) == set(expected)
    for name, service in services.items():
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        got = (service.get("cap_add"), service.get("read_only"), service.get("tmpfs"))
        assert got == expected[name], name


def test_hardening_survives_docker_compose(cli, tmp_path: Path, compose_config) -> None:
    out = tmp_path / "out"
    assert render_case(cli, "minimal", out).code == 0
    done = compose_config(out, "--format", "json")
    assert done.returncode == 0, done.stderr
    backend = json.loads(done.stdout)["services"]["backend"]
    assert backend["cap_drop"] == ["ALL"] and backend["read_only"] is True
    assert backend["security_opt"] == ["no-new-privileges:true"]
