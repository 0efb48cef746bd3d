"""Private Redis and RabbitMQ servers from the Debian packages, for tests, benchmarks and the demo.

Each runs in its own directory on its own ports, so several can live beside a system instance
(and beside each other); `stop()` and `start()` again keep the data, which is how tests take a
broker or Redis down and bring it back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.local.tls import TlsFiles

RABBIT_BIN = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, probe: bytes | None = None) -> None:
    """Wait until something accepts on 127.0.0.1:port (and answers `probe`, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if probe is None:
                    return
                s.sendall(probe)
                s.settimeout(2)
                if s.recv(8):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s")


def spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a process in its own session (stoppable as a group), output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


class _Server:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None, log: Path) -> None:
        self.proc = spawn(argv, log, env)

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL if it lingers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisServer(_Server):
    def __init__(
        self, directory: Path | None = None, port: int | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.dir = directory or Path(tempfile.mkdtemp(prefix="llmwrap-redis-"))
        self.port = port or free_port()
        self.tls = tls  # TLS only on `port`, client certificates required

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.server_cert),
                "--tls-key-file",
                str(self.tls.server_key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "yes",
            ]
        argv = [
            binary,
            *listen,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        self._spawn(argv, None, self.dir / "redis.log")
        wait_port(self.port, timeout)
        return self


class RabbitServer(_Server):
    def __init__(
        self, directory: Path | None = None, port: int | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.dir = directory or Path(tempfile.mkdtemp(prefix="llmwrap-rabbit-"))
        self.port = port or free_port()
        self.tls = tls  # AMQPS only on `port`, client certificates required
        self.dist_port = free_port()
        self.node = f"llmwrap{self.port}@localhost"

    def _env(self) -> dict[str, str]:
        (self.dir / "enabled_plugins").write_text("[].\n")
        listen = f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
        if self.tls is not None:
            listen = (
                "listeners.tcp = none\n"
                f"listeners.ssl.1 = 127.0.0.1:{self.port}\n"
                f"ssl_options.cacertfile = {self.tls.ca}\n"
                f"ssl_options.certfile = {self.tls.server_cert}\n"
                f"ssl_options.keyfile = {self.tls.server_key}\n"
                "ssl_options.verify = verify_peer\n"
                "ssl_options.fail_if_no_peer_cert = true\n"
            )
        (self.dir / "rabbitmq.conf").write_text(
            listen + "loopback_users = none\n"
            "vm_memory_high_watermark.relative = 0.6\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        env = dict(os.environ)
        if self.tls is None:  # (these would open a plain listener beside the TLS one)
            env.update(RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(self.port))
        env.update(
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.dir / "rabbit.pid"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
            HOME=str(self.dir),
        )
        return env

    def start(self, timeout: float = 60.0) -> RabbitServer:
        if not Path(RABBIT_BIN).exists():
            raise FileNotFoundError(f"{RABBIT_BIN} missing: apt-get install rabbitmq-server")
        self._spawn([RABBIT_BIN], self._env(), self.dir / "rabbit.out")
        # An AMQP protocol header gets a Connection.Start frame back once the broker is up
        # (behind TLS, the listener opens when the broker is up).
        wait_port(self.port, timeout, probe=None if self.tls else b"AMQP\x00\x00\x09\x01")
        return self
