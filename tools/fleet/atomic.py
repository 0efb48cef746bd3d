"""Writing generated files: atomically (a reader never sees half a file), with their mode set
before they appear, and not at all when the file already holds the same bytes, so that
rendering again leaves unchanged files (and their timestamps) alone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace(path: Path, data: bytes, mode: int) -> None:
    """Atomically make `path` hold `data` with permissions `mode`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update(path: Path, data: bytes, mode: int) -> bool:
    """`replace` unless `path` already holds `data`; True when written."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    replace(path, data, mode)
    return True
