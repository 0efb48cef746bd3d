"""A process whose wall clock is off, as on a host without NTP (libfaketime)."""

from __future__ import annotations

from pathlib import Path

import pytest

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def skewed(offset: str) -> dict[str, str]:
    """Environment that shifts a process's wall clock by `offset` (e.g. "-30s"); its monotonic
    clock is left alone."""
    if not LIBFAKETIME.exists():
        pytest.skip("libfaketime is not installed (tools/setup/servers.sh installs faketime)")
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"}
