"""heap.settle: start-up's objects set aside, the young generation walked less often."""

from __future__ import annotations

import subprocess
import sys

from tools.local.stack import ROOT

PROBE = """
import gc
before = gc.get_threshold()
from services.common import heap
heap.settle()
print(before[0], gc.get_threshold(), gc.get_freeze_count() > 1000)
"""


def test_settle_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    # In a child process: the collector's settings are process-wide.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    assert out[0] == "700"  # CPython's default, which settle replaces
    assert out[1].strip() == "(50000, 10, 10) True"
