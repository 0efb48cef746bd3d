"""Checked-in output stays current: the example fleets' compose dirs and the spec reference.

After changing the generator or an example, re-render:
  python -m tools.fleet render compose/fleet.example.yaml --out compose
  python -m tools.fleet render compose/fleet.cpu-demo.yaml --out compose/cpu-demo
  python -m tools.fleet docs > docs/fleet-spec-reference.md
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools.fleet import docs

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = [
    ("compose/fleet.example.yaml", "compose"),
    ("compose/fleet.cpu-demo.yaml", "compose/cpu-demo"),
]


def generated(root: Path) -> dict[str, str]:
    files = [root / "docker-compose.yml", *sorted((root / "env").glob("*.env"))]
    files += sorted(p for p in (root / "monitoring").rglob("*") if p.is_file())
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in files
        if p.exists() and p.name != "secrets.env"
    }


@pytest.mark.parametrize(("spec", "out"), EXAMPLES, ids=["example", "cpu-demo"])
def test_checked_in_output_is_current(spec: str, out: str, cli, tmp_path: Path) -> None:
    fresh = tmp_path / "out"
    run = cli("render", REPO / spec, "--out", fresh)
    assert run.code == 0, run.err
    stale = generated(REPO / out) != generated(fresh)
    assert not stale, f"{out} is stale: python -m tools.fleet render {spec} --out {out}"


@pytest.mark.parametrize(("spec", "out"), EXAMPLES, ids=["example", "cpu-demo"])
def test_checked_in_output_is_valid(spec, out, cli, tmp_path, compose_schema, compose_config):
    fresh = tmp_path / "out"
    assert cli("render", REPO / spec, "--out", fresh).code == 0
    compose_schema.validate(yaml.safe_load((REPO / out / "docker-compose.yml").read_text()))
    done = compose_config(fresh, "-q")
    assert done.returncode == 0, done.stderr


def test_example_services(load_compose) -> None:
    services = load_compose(REPO / "compose")["services"]
    assert list(services) == [
        "rabbitmq",
        "redis",
        "backend",
        "worker-llama3-8b",
        "worker-qwen2.5-32b",
        "worker-llama3-70b",
        "prometheus",
        "grafana",
    ]
    demo = load_compose(REPO / "compose" / "cpu-demo")["services"]
    assert list(demo) == ["rabbitmq", "redis", "backend", "worker-echo", "worker-tiny-llama"]
    assert not any("deploy" in svc for svc in demo.values())
    assert demo["worker-tiny-llama"]["volumes"][0]["source"] == "/opt/llm-wrap/models/tiny-llama"


def test_credentials_are_never_checked_in() -> None:
    ignored = (REPO / "compose" / ".gitignore").read_text().split()
    assert "secrets.env" in ignored and "prometheus-api-key" in ignored


def test_spec_reference_is_current() -> None:
    current = (REPO / "docs" / "fleet-spec-reference.md").read_text(encoding="utf-8")
    assert current == docs.reference(), (
        "docs/fleet-spec-reference.md is stale: python -m tools.fleet docs > "
        "docs/fleet-spec-reference.md"
    )


def test_reference_lists_every_field() -> None:
    from tools.fleet.spec import FleetSpec, ModelSpec

    text = docs.reference()
    for name in ModelSpec.model_fields:
        assert f"`models[].{name}`" in text
    for name, field in FleetSpec.model_fields.items():
        assert f"`{name}`" in text
        sub = field.annotation
        for child in getattr(sub, "model_fields", {}):
            assert f"`{name}.{child}`" in text


def test_guide_lists_the_example_services(load_compose) -> None:
    guide = (REPO / "docs" / "fleet.md").read_text(encoding="utf-8")
    for service in load_compose(REPO / "compose")["services"]:
        assert f"| `{service}` |" in guide
