"""Property: whatever the spec, inventory or model config, `render` either exits 0 with a valid
stack or exits 2 with one line per problem and nothing written, and does so quickly.

Hypothesis mutates the valid specs of this suite (a value swapped for a hostile one, a key dropped
or added, a YAML snippet spliced into the text), the GPU inventory and a model's config.json.
The CLI runs in-process (test_hostile_input.py has the subprocess case with a timeout).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tools.fleet import verify
from tools.fleet.cli import main

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[3]
SEEDS = [
    *sorted((DATA / "valid").glob("*.yaml")),
    *sorted((DATA / "golden").glob("*/fleet.yaml")),
    REPO / "compose" / "fleet.example.yaml",
    REPO / "compose" / "fleet.cpu-demo.yaml",
]
SPECS = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in SEEDS]
INVENTORY = (DATA / "gpus-8xh100.csv").read_text(encoding="utf-8").splitlines()
SECONDS_PER_RUN = 5.0
# The first model of every seed points here; the test puts a hostile config.json behind it.
MODEL_DIR = "/placeholder-model-dir"

hostile_scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 2**63, 10**400, 2**64 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
    st.sampled_from(
        ["", " ", "a\n", "1g\n", "127.0.0.1\n", "x" * 300, "$HOME", "'\"", "-", "auto", "\x00"]
    ),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
SNIPPETS = [
    "!!int abc",
    "!!float abc",
    "!!timestamp x",
    "2024-02-30",
    "&a [*a]",
    "9" * 5000,
    "0x" + "f" * 3000,
    "[" * 200,
    "*undefined",
    "{a: 1, a: 2}",
    "? [1]\n: 2",
    "{? !!set {a}: 1}",
    "\t",
    ".nan",
    "!!python/object:os.system x",
]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a spec a value can be swapped: mapping keys and list positions."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def put(node: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@st.composite
def mutated_spec(draw: st.DrawFn) -> str:
    spec = json.loads(json.dumps(draw(st.sampled_from(SPECS))))  # a deep copy
    first = spec["models"][0]
    if first.get("backend", "vllm") == "vllm":
        first["path"] = MODEL_DIR
    for _ in range(draw(st.integers(0, 2))):
        where = paths(spec)
        kind = draw(st.sampled_from(["swap", "swap", "delete", "add"]))
        if kind == "add":
            target = draw(
                st.sampled_from([()] + [p for p in where if isinstance(_at(spec, p), dict)])
            )
            put(
                spec,
                (*target, draw(st.sampled_from(["extra", "gpus", "host", "image", "shm_size"]))),
                draw(hostile_values),
            )
        elif where:
            path = draw(st.sampled_from(where))
            put(spec, path, draw(hostile_values), delete=kind == "delete")
    try:
        text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        text = "models: []\n"
    if draw(st.integers(0, 3)) == 0:
        lines = text.splitlines()
        at = draw(st.integers(0, len(lines) - 1)) if lines else 0
        line = lines[at] if lines else ""
        cut = line.rfind(": ")
        snippet = draw(st.sampled_from(SNIPPETS))
        lines[at : at + 1] = [f"{line[: cut + 2]}{snippet}" if cut >= 0 else f"{line} {snippet}"]
        text = "\n".join(lines) + "\n"
    return text


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_inventory(draw: st.DrawFn) -> str | None:
    if draw(st.booleans()):
        return None
    lines = list(INVENTORY)
    for _ in range(draw(st.integers(0, 3)) // 2):
        at = draw(st.integers(0, len(lines) - 1))
        fields = lines[at].split(",")
        field = draw(st.integers(0, len(fields) - 1))
        fields[field] = draw(
            st.sampled_from(["9" * 5000, "1" + "0" * 400, "", "x", "-1", "²", '"', "GPU-x"])
            | st.text(max_size=12)
        )
        lines[at] = ",".join(fields)
    return "\n".join(lines) + "\n"


model_config = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(
            [
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "hidden_size",
                "vocab_size",
                "head_dim",
                "intermediate_size",
                "torch_dtype",
                "quantization_config",
            ]
        ),
        hostile_values,
        max_size=8,
    ).map(json.dumps),
    st.sampled_from(
        ['{"num_hidden_layers": ' + "9" * 5000 + "}", "[" * 50_000, '{"a": 1e999}', "\xff"]
    ),
)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@settings(
    max_examples=200,
    deadline=None,  # bounded below per run, with a clearer message than a deadline error
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=mutated_spec(), inventory=mutated_inventory(), config=model_config)
def test_render_is_valid_or_refuses_in_one_line_each(
    spec: str, inventory: str | None, config: str | None, compose_schema: Any
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if config is not None:
            (root / "model").mkdir()
            (root / "model" / "config.json").write_text(config, encoding="utf-8", errors="replace")
            spec = spec.replace(MODEL_DIR, str(root / "model"))
        (root / "fleet.yaml").write_text(spec, encoding="utf-8")
        args = ["render", str(root / "fleet.yaml"), "--out", str(root / "out")]
        if inventory is not None:
            (root / "gpus.csv").write_text(inventory, encoding="utf-8")
            args += ["--inventory", str(root / "gpus.csv")]
        started = time.monotonic()
        code, out, err = run_cli(*args)
        assert time.monotonic() - started < SECONDS_PER_RUN
        assert "Traceback" not in err and "internal error" not in err, err
        assert code in (0, 2), (code, err)
        event(f"exit {code}")
        if code == 2:
            assert out == "" and err and all(line.strip() for line in err.splitlines())
            assert any(not line.startswith("warning: ") for line in err.splitlines())
            assert not (root / "out").exists(), "nothing is written on an invalid spec"
            return
        written = root / "out"
        compose = yaml.safe_load((written / "docker-compose.yml").read_text(encoding="utf-8"))
        compose_schema.validate(compose)
        files = {
            str(p.relative_to(written)): p.read_text(encoding="utf-8")
            for p in written.rglob("*")
            if p.is_file() and p.suffix in (".yml", ".env")
        }
        assert verify.check_files(files) == []
