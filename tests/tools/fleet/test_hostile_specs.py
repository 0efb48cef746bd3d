"""Every hostile input of issue 20's fuzzing, one case each: exit 2 with one line per problem and
nothing written (or exit 0 with a valid render), never a traceback, never a hang.

The YAML limits themselves (depth, expanded size) are unit-tested in test_safe_yaml.py; the
property-based search for more such inputs is test_property.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ECHO = "models:\n  - {name: a, backend: echo}\n"


def alias_bomb(levels: int = 12, width: int = 9) -> str:
    """engine_args whose aliases expand to width**levels values (the one that hung)."""
    lines = ["models:", "  - name: a", "    backend: echo", "    engine_args:"]
    lines.append(f"      a0: &a0 [{', '.join(['lol'] * width)}]")
    for i in range(1, levels):
        lines.append(f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def refused(run, out: Path) -> list[str]:
    """The problem lines of a refused render, having checked the refusal's shape."""
    assert run.code == 2, (run.code, run.out, run.err)
    assert run.out == "" and run.err.endswith("\n")
    assert "Traceback" not in run.err and "internal error" not in run.err
    assert not out.exists(), "nothing may be written on an invalid spec"
    return run.lines


YAML_CASES = {
    "bad-int-tag": (
        "models:\n  - {name: a, backend: echo, max_model_len: !!int abc}\n",
        ":2:45: invalid YAML: 'abc' is not a valid int",
    ),
    "bad-float-tag": (
        "models:\n  - {name: a, backend: echo, gpu_memory_utilisation: !!float abc}\n",
        "invalid YAML: 'abc' is not a valid float",
    ),
    "bad-timestamp-tag": (
        "models:\n  - {name: a, backend: echo, engine_args: {x: !!timestamp abc}}\n",
        "invalid YAML: 'abc' is not a valid timestamp",
    ),
    "invalid-date": (
        "models:\n  - {name: a, backend: echo, engine_args: {x: 2024-02-30}}\n",
        "invalid YAML: '2024-02-30' is not a valid timestamp",
    ),
    "recursive-anchor": (
        "models: &m\n  - {name: a, backend: echo, engine_args: {x: *m}}\n",
        "invalid YAML: alias *m is inside its own anchor (a cycle)",
    ),
    "recursive-mapping": (
        "models:\n  - &m {name: a, backend: echo, engine_args: {x: *m}}\n",
        "invalid YAML: alias *m is inside its own anchor (a cycle)",
    ),
    "alias-bomb": (alias_bomb(), "values once aliases are expanded"),
    "deep-flow": ("models: " + "[" * 10_000 + "]" * 10_000 + "\n", "levels deep"),
    "deep-block": (
        "models:\n  - name: a\n    backend: echo\n    engine_args:\n"
        + "".join(f"{'  ' * (i + 3)}k{i}:\n" for i in range(2_000))
        + f"{'  ' * 2_003}v\n",
        "levels deep",
    ),
    "huge-int": ("job_timeout: " + "9" * 5_000 + "\n" + ECHO, "is not a valid int"),
}


@pytest.mark.parametrize("case", YAML_CASES)
def test_hostile_yaml_is_one_line(case: str, cli, write_fleet, tmp_path: Path) -> None:
    text, expected = YAML_CASES[case]
    spec = write_fleet(text)
    out = tmp_path / "out"
    started = time.monotonic()
    lines = refused(cli("render", spec, "--out", out), out)
    assert time.monotonic() - started < 5
    assert len(lines) == 1 and lines[0].startswith(str(spec)), lines
    assert expected in lines[0], lines


FIELD_CASES = {
    "name-newline": ({"models": [{"name": "a\n", "backend": "echo"}]}, "models[0].name: 'a\\n'"),
    "host-newline": ({"backend": {"host": "127.0.0.1\n"}}, "backend.host: '127.0.0.1\\n'"),
    "shm-newline": ({"models": [{"name": "a", "backend": "echo", "shm_size": "1g\n"}]}, "shm_size"),
    "job-timeout-400-digits": ({"job_timeout": 10**400}, "job_timeout: Input should be less"),
    "hex-job-timeout": ("job_timeout: 0x" + "f" * 5_000 + "\n", "job_timeout: Input should be"),
    "empty-backend-image": ({"images": {"backend": ""}}, "images.backend: '' is not a valid image"),
    "image-newline": ({"images": {"redis": "redis:7\n"}}, "images.redis: 'redis:7\\n'"),
    "engine-arg-huge": (
        {"models": [{"name": "a", "backend": "echo", "engine_args": {"x": 2**70}}]},
        "models[0].engine_args: x: the number is too large",
    ),
    "env-huge": (
        {"models": [{"name": "a", "backend": "echo", "env": {"X": 10**400}}]},
        "models[0].env: X: the number is too large",
    ),
    "network-newline": ({"network": "net\n"}, "network: 'net\\n'"),
    "project-newline": ({"name": "proj\n"}, "name: 'proj\\n'"),
    "prefix-newline": ({"redis_prefix": "p\n"}, "redis_prefix: 'p\\n'"),
    "retention-digits": ({"monitoring": {"retention": "9" * 400 + "d"}}, "monitoring.retention"),
    "path-control": (
        {"models": [{"name": "a", "backend": "transformers", "path": "/m/a\tb"}]},
        "models[0].path",
    ),
    "url-newline": (
        {"models": [{"name": "a", "backend": "openai", "inner_llm_url": "http://x/\nB=c"}]},
        "models[0].inner_llm_url",
    ),
    "gpu-index-huge": ({"models": [{"name": "a", "path": "/m", "gpus": [10**30]}]}, "gpus"),
    "not-an-ip": ({"backend": {"host": "999.1.1.1"}}, "backend.host: '999.1.1.1' is not an IP"),
}


@pytest.mark.parametrize("case", FIELD_CASES)
def test_values_compose_would_reject_are_refused(
    case: str, cli, write_fleet, tmp_path: Path
) -> None:
    """Each once rendered (exit 0) into a broken compose or env file; now it names its field."""
    data, expected = FIELD_CASES[case]
    if isinstance(data, str):
        text = data + ECHO
    else:
        text = yaml.safe_dump({"models": [{"name": "a", "backend": "echo"}], **data})
    out = tmp_path / "out"
    lines = refused(cli("render", write_fleet(text), "--out", out), out)
    assert any(expected in line for line in lines), lines
    assert all(len(line) < 400 for line in lines), "a problem line stays readable"


def test_trailing_newline_in_name_was_a_broken_env_file_name(cli, write_fleet, tmp_path) -> None:
    """The name made `env/worker-a\\n.env`; now nothing at all is written."""
    out = tmp_path / "out"
    spec = write_fleet('models:\n  - {name: "a\\n", backend: echo}\n')
    assert refused(cli("render", spec, "--out", out), out)


@pytest.mark.parametrize(
    "config",
    [
        '{"num_hidden_layers": ' + "9" * 5_000 + ', "num_attention_heads": 32}',
        json.dumps({"num_hidden_layers": 10**30, "num_attention_heads": 32, "hidden_size": 8}),
        json.dumps({"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 2**300}),
        '{"num_hidden_layers": 2, "x": ' + "[" * 10_000 + "]" * 10_000 + "}",
        "[" * 100_000,
        '{"num_hidden_layers": 1e400, "num_attention_heads": NaN}',
    ],
    ids=["5000-digits", "1e30-layers", "2^300-hidden", "deep", "deep-unclosed", "inf-nan"],
)
def test_hostile_config_json_is_a_warning(config: str, cli, write_fleet, tmp_path: Path) -> None:
    """The model dir's config.json (read for the VRAM estimate) cannot crash or hang render."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(config)
    inventory = tmp_path / "gpus.csv"
    inventory.write_text("0, GPU-a, NVIDIA H100, 81559\n")
    spec = write_fleet(f"models:\n  - {{name: a, path: {model}, gpus: [0]}}\n")
    out = tmp_path / "out"
    run = cli("render", spec, "--out", out, "--inventory", inventory)
    assert "Traceback" not in run.err and "internal error" not in run.err
    if run.code == 0:
        assert all(line.startswith("warning: models[0].") for line in run.lines), run.lines
    else:
        refused(run, out)


def test_config_json_that_is_a_fifo_does_not_block(cli, write_fleet, tmp_path: Path) -> None:
    import os

    model = tmp_path / "model"
    model.mkdir()
    os.mkfifo(model / "config.json")
    run = cli("validate", write_fleet(f"models:\n  - {{name: a, path: {model}, gpus: [0]}}\n"))
    assert run.code == 0 and "is not a regular file" in run.err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0, GPU-a, H100, " + "9" * 5_000, "memory.total '99999999999999999999999"),
        ("0, GPU-a, H100, 1" + "0" * 400, "is too large for a GPU"),
        ("9" * 5_000 + ", GPU-a, H100, 81559", "GPU index '99999"),
        ("², GPU-a, H100, 81559", "GPU index '²' is not a number"),
        ("0, GPU-a, " + "x" * 200_000 + ", 81559", "line longer than"),
    ],
    ids=["5000-digit-memory", "400-digit-memory", "5000-digit-index", "unicode-digit", "long"],
)
def test_hostile_inventory_is_one_line(line, expected, cli, write_fleet, tmp_path: Path) -> None:
    inventory = tmp_path / "gpus.csv"
    inventory.write_text(line + "\n")
    out = tmp_path / "out"
    run = cli("render", write_fleet(ECHO), "--out", out, "--inventory", inventory)
    lines = refused(run, out)
    assert len(lines) == 1 and expected in lines[0] and len(lines[0]) < 300, lines


def test_alias_bomb_in_a_subprocess_ends_quickly(tmp_path: Path) -> None:
    """The real command line, under a timeout: the bomb that hung is refused in well under one."""
    spec = tmp_path / "fleet.yaml"
    spec.write_text(alias_bomb(levels=30))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "tools.fleet", "render", str(spec), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "aliases are expanded" in done.stderr
    assert not out.exists()
