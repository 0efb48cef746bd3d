"""YAML that cannot hang or crash the generator: bounded depth and size, values checked as built.

PyYAML's SafeLoader runs no code, but it still trusts the document's shape: its composer recurses
once per nesting level (10,000 levels is a RecursionError), an alias is a reference, so a
"billion laughs" of nested aliases is small in memory but endless to walk, an alias inside its
own anchor makes a cyclic value, and a bad `!!int`/`!!float`/`!!timestamp` value or a
5,000-digit integer escapes as a Python error. So the event stream is measured before anything is
composed (depth, and the number of values once every alias is expanded), and every error from
building a value becomes a YAML error with its line and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

# A fleet spec is a few levels deep (engine_args may nest a few more) and a few hundred values.
MAX_DEPTH = 32
MAX_VALUES = 100_000
# Longest scalar shown in a message.
_SHOWN = 40


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and turns failed conversions into YAML errors."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)  # a list, mapping or set as a key
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_shown(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)  # type: ignore[no-untyped-call]
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, KeyError) as e:
            # int() past 4,300 digits, `!!int abc`, `!!timestamp` on a non-date, 2024-02-30...
            tag = node.tag.rsplit(":", 1)[-1]
            what = f"{_shown(node.value)} is not a valid {tag}"
            raise yaml.constructor.ConstructorError(None, None, what, node.start_mark) from e


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


@dataclass
class _Open:
    """A collection whose end event has not come yet: its values so far and tallest child."""

    anchor: str | None
    values: int = 1
    child_height: int = 0


@dataclass
class _Measure:
    """Counts the document as if every alias were a copy of what it names."""

    anchored: dict[str, tuple[int, int]] = field(default_factory=dict)  # (values, height)
    stack: list[_Open] = field(default_factory=list)
    total: int = 0

    def add(self, values: int, height: int, mark: yaml.Mark | None) -> None:
        """A finished node (scalar, collection or alias) of `values` values, `height` high."""
        if len(self.stack) + height > MAX_DEPTH:
            _refuse(f"nested more than {MAX_DEPTH} levels deep", mark)
        if self.stack:
            self.stack[-1].values += values
            self.stack[-1].child_height = max(self.stack[-1].child_height, height)


def _refuse(problem: str, mark: yaml.Mark | None) -> None:
    raise yaml.composer.ComposerError(None, None, problem, mark)


def _measure(text: str) -> None:
    """Walk the events (PyYAML's parser is iterative) and refuse a document too deep or big."""
    m = _Measure()
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        mark = event.start_mark
        if isinstance(event, yaml.CollectionStartEvent):
            m.stack.append(_Open(event.anchor))
            m.total += 1
            if len(m.stack) > MAX_DEPTH:
                _refuse(f"nested more than {MAX_DEPTH} levels deep", mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            done = m.stack.pop()
            height = done.child_height + 1
            if done.anchor is not None:
                m.anchored[done.anchor] = (done.values, height)
            m.add(done.values, height, mark)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                m.anchored[event.anchor] = (1, 0)
            m.total += 1
            m.add(1, 0, mark)
        elif isinstance(event, yaml.AliasEvent):
            if any(o.anchor == event.anchor for o in m.stack):
                _refuse(f"alias *{event.anchor} is inside its own anchor (a cycle)", mark)
            values, height = m.anchored.get(event.anchor or "", (1, 0))
            m.total += values
            m.add(values, height, mark)
        if m.total > MAX_VALUES:
            _refuse(f"more than {MAX_VALUES} values once aliases are expanded", mark)


def load(text: str) -> Any:
    """Parse one YAML document safely; raise yaml.YAMLError (with a mark where known)."""
    _measure(text)
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
