"""The one way this repository starts a stack on this host: backend and worker processes
(uvicorn, `python -m services.worker`) against Redis and RabbitMQ servers (`servers.py`).

Used by the tests (`Stack`, per test), the benchmarks (`start_backend`, `start_worker`: they read
each process's CPU) and the local demo (`python -m tools.demo --local`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.local.servers import free_port, spawn

ROOT = Path(__file__).resolve().parents[2]
APP = "services.backend.main:app"


def backend_argv(
    port: int, *, app: str = APP, procs: int = 1, access_log: bool = False
) -> list[str]:
    """uvicorn serving `app` (the backend, or a benchmark's floor) on 127.0.0.1:port."""
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    if not access_log:
        argv.append("--no-access-log")
    if procs > 1:
        argv += ["--workers", str(procs)]
    return argv


def wait_http(proc: Proc, probe: Callable[[str], bool] | None = None, timeout: float = 30) -> None:
    """Wait until `proc` answers: `probe(url)` true (default: GET /health is 200)."""
    check = probe or (lambda url: httpx.get(url + "/health", timeout=1).status_code == 200)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.argv[2:4]} exited:\n{proc.output()}")
        try:
            if check(proc.url):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.argv[2:4]} did not answer within {timeout:g} s:\n{proc.output()}")


def start_backend(
    env: dict[str, str],
    log: Path,
    *,
    port: int | None = None,
    app: str = APP,
    procs: int = 1,
    probe: Callable[[str], bool] | None = None,
    timeout: float = 30,
    cwd: Path = ROOT,
) -> Proc:
    """A backend (or another ASGI app) on its own port, started and answering."""
    port = port or free_port()
    argv = backend_argv(port, app=app, procs=procs)
    p = Proc(argv, {**env, "API_PORT": str(port)}, log, cwd=cwd)
    p.url = f"http://127.0.0.1:{port}"
    p.start()
    wait_http(p, probe, timeout)
    return p


def start_worker(
    env: dict[str, str], log: Path, *, python: str = sys.executable, cwd: Path = ROOT
) -> Proc:
    """A worker (`MODEL_BACKEND` and the rest from `env`); not waited for."""
    return Proc([python, "-m", "services.worker"], env, log, cwd=cwd).start()


def stack_env(redis_port: int, rabbit_port: int, prefix: str) -> dict[str, str]:
    """This environment, pointed at the given servers under a Redis prefix of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBIT_MQ_", "REDIS_"))}
    env.update(
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(redis_port),
        REDIS_PREFIX=prefix,
        RABBIT_MQ_HOST="127.0.0.1",
        RABBIT_MQ_PORT=str(rabbit_port),
        RABBIT_MQ_LOGIN="guest",
        RABBIT_MQ_PASSWORD="guest",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Proc:
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    cwd: Path = ROOT  # the code it runs (a benchmark's baseline runs from its own worktree)

    def start(self) -> Proc:
        self.proc = spawn(self.argv, self.log, self.env, self.cwd)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    """Env shared by the processes of one test: its own Redis prefix and queues."""

    base_env: dict[str, str]
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def _env(self, **overrides: object) -> dict[str, str]:
        env = dict(self.base_env)
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def backend(self, **env: object) -> Proc:
        port = free_port()
        p = start_backend(self._env(**env), self.tmp / f"backend-{port}.log", port=port)
        self.procs.append(p)
        return p

    def worker(
        self,
        queue: str,
        *,
        wait: bool = True,
        python: str = sys.executable,
        timeout: float = 120,
        **env: object,
    ) -> Proc:
        """A worker process; `python` picks its environment (the vLLM worker has its own)."""
        n = len(self.procs)
        hb = self.tmp / f"worker-{n}.alive"
        defaults: dict[str, object] = {
            "QUEUE_NAME": queue,
            "MODEL_BACKEND": "echo",
            "HEARTBEAT_FILE": hb,
            "HEARTBEAT_INTERVAL": 0.5,
            "HEARTBEAT_TTL": 2,
        }
        defaults.update(env)
        p = start_worker(self._env(**defaults), self.tmp / f"worker-{n}.log", python=python)
        self.procs.append(p)
        if wait:
            self.wait_worker(p, hb, timeout)
        return p

    @staticmethod
    def wait_worker(p: Proc, heartbeat: Path, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.proc is not None and p.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{p.output()}")
            if heartbeat.exists():
                return
            time.sleep(0.05)
        raise TimeoutError(f"worker did not announce itself:\n{p.output()}")

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
