"""The `monitoring` profile: Prometheus scrapes every backend and every worker of the first host,
Grafana charts what they export.

The dashboard is checked against the backend's and the worker's own metric registries
(services/backend/metrics.py and services/worker/metrics.py are the source of truth), so a
misspelt or renamed metric fails here instead of drawing an empty panel. Its `vllm:` series are
checked against a real vLLM worker's page (tests/services/worker/models/test_vllm_model.py).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml

import services.backend.metrics  # noqa: F401  (registers the backend's metrics)
import services.worker.metrics  # noqa: F401  (and the worker's)
from tools.fleet import monitoring
from tools.fleet.render import TEMPLATES

DASHBOARD = TEMPLATES / monitoring.DASHBOARDS / monitoring.DASHBOARD
METRIC_RE = re.compile(r"llm_wrap_[a-z_]+")
VLLM_RE = re.compile(r"vllm:[a-z_]+")
# The series names each metric type exposes (prometheus_client drops a counter's `_total`).
SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# What the issue asks the dashboard to show, as the series a query names.
REQUIRED = {
    "llm_wrap_jobs_total",
    "llm_wrap_job_seconds_bucket",
    "llm_wrap_job_queue_seconds_bucket",
    "llm_wrap_job_run_seconds_bucket",
    "llm_wrap_time_to_first_token_seconds_bucket",
    "llm_wrap_output_tokens_total",
    "llm_wrap_prompt_tokens_total",
    "llm_wrap_requests_rejected_total",
    "llm_wrap_jobs_waiting",
    "llm_wrap_queue_depth",
    "llm_wrap_queue_consumers",
    "llm_wrap_live_workers",
    # Per worker (its own /metrics).
    "llm_wrap_worker_jobs_running",
    "llm_wrap_worker_capacity",
    "llm_wrap_worker_output_tokens_total",
    "llm_wrap_worker_jobs_total",
}
SPEC = """
models:
  - {name: echo, backend: echo}
backend: {replicas: 2, require_api_keys: true}
monitoring: {enabled: true, grafana_port: 13000}
"""


def exported() -> set[str]:
    """Every llm_wrap series the backend's registry can expose."""
    names = set()
    for family in prometheus_client.REGISTRY.collect():
        if family.name.startswith("llm_wrap_"):
            names.update(family.name + suffix for suffix in SERIES[family.type])
    return names


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL text of the dashboard: panel targets and template variable queries."""

    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    yield value
                elif key == "query" and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return walk(dashboard)


def used(dashboard: dict[str, Any]) -> set[str]:
    return {name for text in queries(dashboard) for name in METRIC_RE.findall(text)}


def used_vllm(dashboard: dict[str, Any]) -> set[str]:
    """The vLLM engine series the dashboard names (exported by vLLM workers)."""
    return {name for text in queries(dashboard) for name in VLLM_RE.findall(text)}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture
def rendered(cli, write_fleet, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    run = cli("render", write_fleet(SPEC), "--out", out)
    assert run.code == 0, run.err
    assert "prometheus, grafana" in run.out and "--profile monitoring up -d" in run.out
    assert "Grafana at http://127.0.0.1:13000" in run.out
    return out


def test_dashboard_names_only_exported_metrics(dashboard) -> None:
    names = used(dashboard)
    assert "llm_wrap_jobs_total" in exported()
    assert names - exported() == set()
    assert REQUIRED <= names, f"not charted: {sorted(REQUIRED - names)}"


@pytest.mark.parametrize(
    ("right", "wrong"),
    [
        ("llm_wrap_queue_depth", "llm_wrap_queue_dept"),
        ("llm_wrap_job_run_seconds_bucket", "llm_wrap_job_run_second_bucket"),
        # A counter's series ends in _total; the bare name is no series at all.
        ("llm_wrap_output_tokens_total", "llm_wrap_output_tokens"),
    ],
)
def test_a_misspelt_metric_is_caught(dashboard, right: str, wrong: str) -> None:
    text = json.dumps(dashboard)
    assert right in text
    broken = json.loads(text.replace(right, wrong))
    assert used(broken) - exported() == {wrong}


def test_every_panel_queries_the_provisioned_datasource(dashboard) -> None:
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 39
    found = panels(dashboard)
    assert len(found) >= 12
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    uid = {"type": "prometheus", "uid": monitoring.DATASOURCE_UID}
    for panel in found:
        assert panel["datasource"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == uid, panel["title"]
            assert METRIC_RE.search(target["expr"]) or VLLM_RE.search(target["expr"]), panel[
                "title"
            ]
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == uid


def test_latency_quantiles_come_from_bucket_rates(dashboard) -> None:
    exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
    quantiles = [e for e in exprs if "histogram_quantile" in e]
    assert len(quantiles) >= 8
    for expr in quantiles:
        assert re.search(r"sum by \(le\b[^)]*\) \(rate\(llm_wrap_[a-z_]+_bucket\{", expr), expr


def test_profile_services_are_valid_compose(
    rendered: Path, compose_schema, compose_config, load_compose
) -> None:
    compose = load_compose(rendered)
    compose_schema.validate(compose)
    assert compose_config(rendered, "-q").returncode == 0
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        assert services[name]["networks"] == ["llm_wrap_network"]
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["grafana"]["ports"] == ["127.0.0.1:13000:3000"]
    assert {"prometheus-data", "grafana-data"} <= set(compose["volumes"])


def started(compose_config: Callable[..., Any], out: Path, profiles: str) -> list[str]:
    done = compose_config(out, "--services", env={"COMPOSE_PROFILES": profiles})
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def test_only_the_profile_starts_them(rendered: Path, compose_config) -> None:
    plain = ["backend", "rabbitmq", "redis", "worker-echo"]
    assert started(compose_config, rendered, "") == plain
    assert started(compose_config, rendered, "monitoring") == sorted(
        [*plain, "prometheus", "grafana"]
    )


def test_mounted_config_exists(rendered: Path, load_compose) -> None:
    """Every bind source is a generated file or folder (a missing one would become a directory)."""
    services = load_compose(rendered)["services"]
    for name in ("prometheus", "grafana"):
        binds = [v for v in services[name]["volumes"] if isinstance(v, dict)]
        assert binds and all(v["read_only"] for v in binds)
        for bind in binds:
            assert (rendered / bind["source"]).exists(), bind["source"]


def test_prometheus_scrapes_every_backend_and_worker(rendered: Path, load_compose) -> None:
    config = yaml.safe_load((rendered / monitoring.PROMETHEUS_CONFIG).read_text())
    job, workers = config["scrape_configs"]
    assert workers["job_name"] == "llm-wrap-workers" and "authorization" not in workers
    assert workers["dns_sd_configs"] == [
        {"names": ["worker-echo"], "type": "A", "port": 9400, "refresh_interval": "30s"}
    ]
    assert load_compose(rendered)["services"]["worker-echo"]
    assert "WORKER_METRICS_PORT=9400" in (rendered / "env" / "worker-echo.env").read_text()
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"] == [
        {"names": ["backend"], "type": "A", "port": 8000, "refresh_interval": "30s"}
    ]
    # The name and port are the backend service's and the port its container listens on.
    services = load_compose(rendered)["services"]
    assert "backend" in services
    assert services["backend"]["ports"][0].endswith(":8000")
    assert config["global"]["scrape_interval"] == "15s"


def test_grafana_is_provisioned(rendered: Path, load_compose, read_env) -> None:
    provisioning = rendered / monitoring.PROVISIONING
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["uid"] == monitoring.DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["jsonData"]["timeInterval"] == "15s"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "llm-wrap.yml").read_text())[
        "providers"
    ]
    grafana = load_compose(rendered)["services"]["grafana"]
    targets = {v["source"]: v["target"] for v in grafana["volumes"] if isinstance(v, dict)}
    assert targets[f"./{monitoring.DASHBOARDS}"] == provider["options"]["path"]
    copied = rendered / monitoring.DASHBOARDS / monitoring.DASHBOARD
    assert copied.read_bytes() == DASHBOARD.read_bytes()
    env = read_env(rendered / "env" / "grafana.env")
    assert env["GF_SECURITY_ADMIN_USER"] == "admin" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert grafana["env_file"] == ["env/grafana.env", "env/secrets.env"]
    assert len(read_env(rendered / "env" / "secrets.env")["GF_SECURITY_ADMIN_PASSWORD"]) >= 32


def test_admin_password_reaches_grafana(rendered: Path, compose_config, read_env) -> None:
    done = compose_config(rendered, "--format", "json", env={"COMPOSE_PROFILES": "monitoring"})
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)["services"]["grafana"]["environment"]
    secrets = read_env(rendered / "env" / "secrets.env")
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == secrets["GF_SECURITY_ADMIN_PASSWORD"]


def test_switching_monitoring_off_removes_its_files(cli, write_fleet, rendered: Path) -> None:
    plain = write_fleet("models:\n  - {name: echo, backend: echo}\n", "plain.yaml")
    run = cli("render", plain, "--out", rendered)
    assert run.code == 0 and "removed stale" in run.out
    assert not [p for p in (rendered / "monitoring").rglob("*") if p.is_file()]
    assert not (rendered / "env" / "grafana.env").exists()
    assert "prometheus" not in (rendered / "docker-compose.yml").read_text()


def test_mounted_config_is_readable_by_the_containers(cli, write_fleet, tmp_path: Path) -> None:
    """Prometheus runs as nobody and Grafana as uid 472: a private umask must not lock them out."""
    spec = write_fleet(SPEC)
    old = os.umask(0o077)
    try:
        assert cli("render", spec, "--out", tmp_path / "out").code == 0
    finally:
        os.umask(old)
    root = tmp_path / "out" / "monitoring"
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), path


def test_prometheus_scrapes_the_keyed_metrics_with_the_first_key(
    rendered: Path, load_compose, read_env
) -> None:
    """Keys required and /metrics not public: the first API key, in a file only it reads."""
    key_file = rendered / monitoring.API_KEY_FILE
    keys = read_env(rendered / "env" / "secrets.env")["API_KEYS"]
    first = keys.split(",")[0]
    assert key_file.read_text() == first.strip() and len(first.strip()) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o644  # Prometheus runs as nobody
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700  # other host users: no entry
    job = yaml.safe_load((rendered / monitoring.PROMETHEUS_CONFIG).read_text())["scrape_configs"][0]
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": monitoring.API_KEY_TARGET,
    }
    prometheus = load_compose(rendered)["services"]["prometheus"]
    assert {
        "type": "bind",
        "source": f"./{monitoring.API_KEY_FILE}",
        "target": monitoring.API_KEY_TARGET,
        "read_only": True,
    } in prometheus["volumes"]
    assert (
        monitoring.API_KEY_FILE
        not in (rendered / "docker-compose.yml").read_text().split("prometheus:")[0]
    ), "only Prometheus mounts the key"


@pytest.mark.parametrize(
    "backend", ["{public_endpoints: [metrics]}", "{require_api_keys: false}"], ids=str
)
def test_open_metrics_need_no_scrape_key(cli, write_fleet, rendered: Path, backend: str) -> None:
    spec = write_fleet(
        SPEC.replace("backend: {replicas: 2, require_api_keys: true}", f"backend: {backend}")
    )
    run = cli("render", spec, "--out", rendered)
    assert run.code == 0, run.err
    assert f"removed stale {rendered / monitoring.API_KEY_FILE}" in run.out
    config = yaml.safe_load((rendered / monitoring.PROMETHEUS_CONFIG).read_text())
    assert "authorization" not in config["scrape_configs"][0]
    assert monitoring.API_KEY_TARGET not in (rendered / "docker-compose.yml").read_text()


def test_a_scrape_key_needs_a_key(cli, write_fleet, rendered: Path) -> None:
    secrets = rendered / "env" / "secrets.env"
    lines = secrets.read_text().splitlines()
    lines = ['API_KEYS=" , "' if line.startswith("API_KEYS=") else line for line in lines]
    secrets.write_text("\n".join(lines) + "\n")
    run = cli("render", write_fleet(SPEC), "--out", rendered)
    assert run.code == 2
    assert run.lines == ["env/secrets.env: API_KEYS lists no key for Prometheus to scrape with"]
