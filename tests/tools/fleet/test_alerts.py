"""The monitoring profile's alert rules: valid for Prometheus, evaluated by Prometheus' own rule
engine (`promtool test rules`: each alert fires on its failure, after its wait, and a healthy
fleet raises none), naming only metrics the backend exports, and mounted where the rendered
prometheus.yml loads them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import prometheus_client
import pytest
import yaml

import services.backend.metrics  # noqa: F401  (registers the backend's metrics)
from tools.fleet import monitoring
from tools.fleet.render import TEMPLATES

RULES = TEMPLATES / monitoring.ALERTS
UNIT_TESTS = Path(__file__).parent / "data" / "alerts" / "alerts_test.yml"
METRIC_RE = re.compile(r"llm_wrap_[a-z_]+")
SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: bash tools/setup/servers.sh installs it"
)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_prometheus_accepts_the_rules() -> None:
    checked = _promtool("check", "rules", str(RULES), cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


@needs_promtool
def test_each_alert_fires_on_its_failure_and_not_on_a_healthy_fleet(tmp_path: Path) -> None:
    shutil.copy(RULES, tmp_path / "alerts.yml")
    shutil.copy(UNIT_TESTS, tmp_path / "alerts_test.yml")
    tested = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert tested_alerts == {rule["alert"] for rule in rules}


@needs_promtool
def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: a threshold moved past the failure they simulate is caught."""
    text = RULES.read_text().replace(
        "max by (queue) (llm_wrap_dead_letters) > 0", "max by (queue) (llm_wrap_dead_letters) > 5"
    )
    (tmp_path / "alerts.yml").write_text(text)
    shutil.copy(UNIT_TESTS, tmp_path / "alerts_test.yml")
    tested = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "LlmWrapDeadLetters" in tested.stdout + tested.stderr


def test_rules_name_only_exported_metrics() -> None:
    exported = set()
    for family in prometheus_client.REGISTRY.collect():
        if family.name.startswith("llm_wrap_"):
            exported.update(family.name + suffix for suffix in SERIES[family.type])
    named = set(METRIC_RE.findall(RULES.read_text()))
    assert "llm_wrap_dead_letters" in named
    assert named - exported == set()


def test_rendered_prometheus_loads_the_mounted_rules(tmp_path: Path) -> None:
    from tools.fleet.cli import main

    spec = tmp_path / "fleet.yaml"
    spec.write_text("monitoring: {enabled: true}\nmodels:\n  - {name: tiny, backend: echo}\n")
    out = tmp_path / "out"
    assert main(["render", str(spec), "--out", str(out)]) == 0
    config = yaml.safe_load((out / monitoring.PROMETHEUS_CONFIG).read_text())
    assert config["rule_files"] == [monitoring.ALERTS_TARGET]
    assert (out / monitoring.ALERTS).read_text() == RULES.read_text()
    compose = yaml.safe_load((out / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert any(
        v["source"] == f"./{monitoring.ALERTS}" and v["target"] == monitoring.ALERTS_TARGET
        if isinstance(v, dict)
        else v.startswith(f"./{monitoring.ALERTS}:{monitoring.ALERTS_TARGET}")
        for v in volumes
    ), volumes
