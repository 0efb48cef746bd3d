"""Read FLEET.yaml into a FleetSpec, or into every problem that stops it.

The fleet-level settings and each model are validated separately, so a bad model does not hide
the problems of the others and the cross-model checks still see every model that parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tools.fleet import safe_yaml
from tools.fleet.problems import Problem, from_validation_error
from tools.fleet.spec import FleetSettings, FleetSpec, ModelSpec


@dataclass
class Loaded:
    """What validation produced: the spec when everything parsed, and the parsed parts anyway."""

    problems: list[Problem] = field(default_factory=list)
    settings: FleetSettings | None = None
    models: dict[int, ModelSpec] = field(default_factory=dict)
    spec: FleetSpec | None = None


def read_yaml(path: Path) -> tuple[object, list[Problem]]:
    """Parse the file; a missing file, bad encoding or YAML error is one problem naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(str(path), "no such file")]
    except IsADirectoryError:
        return None, [Problem(str(path), "is a directory, not a fleet spec")]
    except UnicodeDecodeError:
        return None, [Problem(str(path), "is not UTF-8 text")]
    except OSError as e:
        return None, [Problem(str(path), f"cannot read: {e.strerror or e}")]
    try:
        data = safe_yaml.load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        return None, [Problem(where, f"invalid YAML: {what}")]
    except yaml.YAMLError as e:
        return None, [Problem(str(path), f"invalid YAML: {e}")]
    if data is None:
        return None, [Problem(str(path), "is empty; a fleet spec needs at least a 'models' list")]
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else repr(data)
        return None, [Problem(str(path), f"expected a mapping at the top level, got {kind}")]
    return data, []


def validate_data(data: dict[str, Any]) -> Loaded:
    """Validate settings and each model on their own; build the whole spec when all are valid."""
    out = Loaded()
    rest = {k: v for k, v in data.items() if k != "models"}
    try:
        out.settings = FleetSettings.model_validate(rest)
    except ValidationError as e:
        out.problems += from_validation_error(e, FleetSettings)
    raw_models = data.get("models")
    if "models" not in data:
        out.problems.append(Problem("models", "required: list the models to serve"))
    elif not isinstance(raw_models, list):
        kind = "a mapping" if isinstance(raw_models, dict) else repr(raw_models)
        out.problems.append(Problem("models", f"expected a list of models, got {kind}"))
    elif not raw_models:
        out.problems.append(Problem("models", "is empty; list at least one model"))
    else:
        for index, raw in enumerate(raw_models):
            try:
                out.models[index] = ModelSpec.model_validate(raw)
            except ValidationError as e:
                out.problems += from_validation_error(e, ModelSpec, ("models", index))
    if not out.problems and out.settings is not None:
        out.spec = FleetSpec.model_validate(data)
    return out


def load(path: Path) -> Loaded:
    data, problems = read_yaml(path)
    if problems or not isinstance(data, dict):
        return Loaded(problems=problems)
    return validate_data(data)
