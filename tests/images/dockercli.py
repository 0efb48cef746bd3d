"""The docker CLI and build.sh as the image tests call them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = ROOT / "tools" / "images" / "build.sh"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; on failure, raise with its output."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _torch_wheels_dir() -> str | None:
    """A directory holding a CPU torch wheel: LLMWRAP_WHEELS_DIR, else /opt/wheels if it has one."""
    if os.environ.get("LLMWRAP_WHEELS_DIR"):
        return os.environ["LLMWRAP_WHEELS_DIR"]
    default = Path("/opt/wheels")
    return str(default) if any(default.glob("torch-*.whl")) else None


def build_command(only: str, *, offline: bool = True) -> list[str]:
    """build.sh on the local Debian base (`offline`; else the base build.sh picks), with this
    host's CA bundle and torch wheel if any."""
    cmd = ["bash", str(BUILD_SH), *(["--offline"] if offline else []), "--only", only]
    ca = os.environ.get("LLMWRAP_CA_CERT") or (str(HOST_CA) if HOST_CA.is_file() else "")
    if ca:
        cmd += ["--ca-cert", ca]
    wheels = _torch_wheels_dir()
    if wheels:
        cmd += ["--wheels", wheels]
    return cmd
