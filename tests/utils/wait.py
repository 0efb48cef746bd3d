"""Waiting for something a test can observe, with a deadline, instead of sleeping a fixed time.

A fixed sleep decides the outcome by the machine's speed: too short on a loaded machine and the
test fails for nothing, and a wait that gives up quietly lets the test go on to assert against a
state that never came. These poll until the predicate holds and raise, saying what was awaited,
when the deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

What = str | Callable[[], str]


def _timed_out(what: What, timeout: float) -> TimeoutError:
    said = what() if callable(what) else what
    return TimeoutError(f"gave up after {timeout:g} s waiting for {said}")


def wait_until(predicate: Callable[[], T], timeout: float, what: What, every: float = 0.02) -> T:
    """The predicate's first truthy value; TimeoutError naming `what` (a callable is read only
    then, e.g. for a log) if none came within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout)
        time.sleep(every)


async def until(predicate: Callable[[], T], timeout: float, what: What, every: float = 0.005) -> T:
    """`wait_until` for async tests: the event loop runs on between looks."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout)
        await asyncio.sleep(every)
