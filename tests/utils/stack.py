"""Real backend and worker processes for end-to-end tests (uvicorn, `python -m services.worker`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.local.servers import free_port, spawn

ROOT = Path(__file__).resolve().parents[2]


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

    def start(self) -> Proc:
        self.proc = spawn(self.argv, self.log, self.env, ROOT)
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
        p = Proc(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "services.backend.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            self._env(API_PORT=port, **env),
            self.tmp / f"backend-{port}.log",
        ).start()
        p.url = f"http://127.0.0.1:{port}"
        self.procs.append(p)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if p.proc is not None and p.proc.poll() is not None:
                raise RuntimeError(f"backend exited:\n{p.output()}")
            try:
                if httpx.get(p.url + "/health", timeout=1).status_code == 200:
                    return p
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"backend did not start:\n{p.output()}")

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
        p = Proc(
            [python, "-m", "services.worker"],
            self._env(**defaults),
            self.tmp / f"worker-{n}.log",
        ).start()
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
