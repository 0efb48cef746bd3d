"""API keys: from `API_KEYS` (comma-separated) and `API_KEYS_FILE` (one per line, `#` comments).

The file is re-read when it changes (checked every second, off the event loop), so keys can be
added or revoked without a restart. A configured file fails closed: if it is empty or unreadable,
no key from it is accepted, and keys stay required.
"""

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 1.0


def _read(path: Path) -> frozenset[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return frozenset(line for line in lines if line)


class ApiKeys:
    def __init__(self, keys: frozenset[str] = frozenset(), file: str = "") -> None:
        self._static = keys
        self._file = Path(file) if file else None
        self._from_file: frozenset[str] = frozenset()
        self._seen: tuple[float, int] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def required(self) -> bool:
        return bool(self._static) or self._file is not None

    def allows(self, given: str) -> bool:
        """Constant-time comparison against every key (no early exit on a near match)."""
        ok = False
        for key in self._static | self._from_file:
            ok |= secrets.compare_digest(given.encode(), key.encode())
        return ok

    async def start(self) -> None:
        """Read the file once (a missing file is an error at start), then watch it."""
        if self._file is None:
            return
        await asyncio.to_thread(self._reload, True)
        self._task = asyncio.create_task(self._watch(), name="api-keys-file")

    def _reload(self, strict: bool = False) -> None:
        assert self._file is not None
        try:
            st = os.stat(self._file)
            seen = (st.st_mtime, st.st_size)
            if seen == self._seen:
                return
            keys = _read(self._file)
        except OSError as e:
            if strict:
                raise RuntimeError(f"API_KEYS_FILE {self._file}: {e.strerror}") from e
            if self._from_file:
                log.error("API_KEYS_FILE %s unreadable (%s): its keys are refused", self._file, e)
            self._from_file, self._seen = frozenset(), None
            return
        if self._seen is not None:
            log.info("API_KEYS_FILE %s changed: %d key(s)", self._file, len(keys))
        self._from_file, self._seen = keys, seen

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_CHECK_S)
            await asyncio.to_thread(self._reload)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
