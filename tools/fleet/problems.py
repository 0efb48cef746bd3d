"""Problems found in a fleet spec, each named by its field path (`models[1].gpus: ...`).

Every check returns problems instead of raising, so that one run reports all of them at once;
pydantic's errors are translated here into the same one-line shape.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

Loc = Sequence[int | str]


@dataclass(frozen=True)
class Problem:
    """One line of output: an error (render refuses) or a warning (render goes on)."""

    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        """One line, whatever the path or message hold (a file name may contain a newline)."""
        text = f"{self.path}: {self.message}" if self.path else self.message
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        return f"warning: {text}" if self.warning else text


class FleetError(Exception):
    """Raised with every problem found, when any of them is an error."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)


def path_of(loc: Loc) -> str:
    """('models', 1, 'gpus') -> 'models[1].gpus'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The spec section a location points into, to suggest the key a typo meant."""
    current: object = root
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field else None
        else:
            return None
        origin = typing.get_origin(current)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(current) if a is not type(None)]
            current = members[0] if len(members) == 1 else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _type_name(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def from_validation_error(
    error: ValidationError, root: type[BaseModel], prefix: Loc = ()
) -> list[Problem]:
    """Translate pydantic's errors into problems whose paths start at the top of FLEET.yaml."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(prefix) + tuple(item["loc"])
        kind, message = item["type"], item["msg"]
        if kind == "extra_forbidden":
            message = "unknown key"
            section = _model_at(root, loc[len(prefix) : -1])
            if section is not None:
                close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1)
                if close:
                    message += f" (did you mean '{close[0]}'?)"
        elif kind == "missing":
            message = "required"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = f"expected a mapping, got {_type_name(item['input'])}"
        elif kind == "list_type":
            message = f"expected a list, got {_type_name(item['input'])}"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(Problem(path_of(loc), message))
    return problems


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if not p.warning]
