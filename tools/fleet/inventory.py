"""The GPU inventory of the host: what `nvidia-smi` reports, live or from a saved file.

The saved form is exactly the output of `nvidia-smi --query-gpu=index,uuid,name,memory.total
--format=csv,noheader,nounits`, so `python -m tools.fleet inventory > gpus.csv` on the GPU host
gives a file that `--inventory gpus.csv` reads anywhere (rendering need not run on that host).
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.fleet.fields import GpuId

NVIDIA_SMI_ARGS = (
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
)


# Bounds that keep every number usable (a 5,000-digit memory size is no GPU): 1 PiB in MiB.
MAX_INDEX_DIGITS = 4
MAX_MEMORY_DIGITS = 9
MAX_LINE = 10_000


class InventoryError(Exception):
    """The inventory could not be read; the message is one line for the user."""


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_mib: int

    def matches(self, gpu_id: GpuId) -> bool:
        return gpu_id == (self.index if isinstance(gpu_id, int) else self.uuid)

    def csv_line(self) -> str:
        return f"{self.index}, {self.uuid}, {self.name}, {self.memory_mib}"


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...]
    source: str

    def find(self, gpu_id: GpuId) -> Gpu | None:
        return next((g for g in self.gpus if g.matches(gpu_id)), None)

    def describe(self) -> str:
        """'indices 0-7' or 'indices 0, 2, 5', for error messages."""
        idx = sorted(g.index for g in self.gpus)
        if idx == list(range(idx[0], idx[-1] + 1)) and len(idx) > 2:
            return f"{self.source} lists GPUs {idx[0]}-{idx[-1]}"
        return f"{self.source} lists GPUs {', '.join(map(str, idx))}"


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def parse(text: str, source: str) -> Inventory:
    """Parse nvidia-smi's csv; blank lines and `#` comments are allowed in saved files."""
    gpus: list[Gpu] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        if len(line) > MAX_LINE:
            raise InventoryError(f"{where}: line longer than {MAX_LINE} characters")
        try:
            row = next(csv.reader([line], skipinitialspace=True), [])
        except csv.Error as e:
            raise InventoryError(f"{where}: not a csv line ({e})") from e
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 4:
            raise InventoryError(
                f"{where}: expected 4 comma-separated fields "
                f"(index, uuid, name, memory.total MiB), got {len(row)}"
            )
        index, uuid, name, memory = (field.strip() for field in row)
        if not re.fullmatch(rf"[0-9]{{1,{MAX_INDEX_DIGITS}}}", index):
            raise InventoryError(f"{where}: GPU index {_shown(index)} is not a number")
        if not re.fullmatch(r"[0-9]+", memory):
            raise InventoryError(f"{where}: memory.total {_shown(memory)} is not a number of MiB")
        if len(memory) > MAX_MEMORY_DIGITS:
            raise InventoryError(
                f"{where}: memory.total {_shown(memory)} is too large for a GPU "
                f"(at most {MAX_MEMORY_DIGITS} digits of MiB)"
            )
        if not uuid.startswith(("GPU-", "MIG-")):
            raise InventoryError(f"{where}: {_shown(uuid)} is not a GPU UUID")
        gpu = Gpu(int(index), uuid, name, int(memory))
        if any(g.index == gpu.index or g.uuid == gpu.uuid for g in gpus):
            raise InventoryError(f"{where}: GPU {gpu.index} ({gpu.uuid}) is listed twice")
        gpus.append(gpu)
    if not gpus:
        raise InventoryError(f"{source}: lists no GPUs")
    return Inventory(tuple(sorted(gpus, key=lambda g: g.index)), source)


def read_file(path: Path | str, stdin_text: str | None = None) -> Inventory:
    """Read a saved inventory; `-` reads it from standard input (pipe nvidia-smi into render)."""
    if str(path) == "-":
        return parse(stdin_text or "", "<stdin>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InventoryError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from e
    return parse(text, str(path))


def query(command: Sequence[str] = ("nvidia-smi",), timeout: float = 30) -> Inventory:
    """Ask the live driver. A missing or failing nvidia-smi is one clear line, never a trace."""
    exe = shutil.which(command[0])
    if exe is None:
        raise InventoryError(
            f"{command[0]} not found: run this on the GPU host (NVIDIA driver installed), "
            "or pass a saved inventory with --inventory FILE"
        )
    try:
        done = subprocess.run(
            [exe, *command[1:], *NVIDIA_SMI_ARGS],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InventoryError(f"{command[0]} failed: {e}") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = detail[0] if detail else f"exit status {done.returncode}"
        raise InventoryError(f"{command[0]} failed: {reason}")
    return parse(done.stdout, command[0])
