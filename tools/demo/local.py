"""Run the stack on this host, without Docker: `python -m tools.demo --local [up|down]`.

`up` starts private Redis and RabbitMQ servers (Debian packages), one echo worker and the backend
on API_PORT (default 8000), all in the background, then sends the original README's /generate
example and prints the answer. `down` stops everything `up` started (pids in `.run/demo.json`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from tools.demo.example import EXAMPLE, ask
from tools.local.servers import RabbitServer, RedisServer
from tools.local.stack import start_backend, start_worker

RUN = Path(__file__).resolve().parents[2] / ".run"
STATE = RUN / "demo.json"


def up(port: int) -> int:
    if STATE.exists():
        down()
    RUN.mkdir(exist_ok=True)
    for d in ("redis", "rabbit"):
        (RUN / d).mkdir(exist_ok=True)
    redis = RedisServer(RUN / "redis").start()
    rabbit = RabbitServer(RUN / "rabbit").start()
    assert redis.proc is not None and rabbit.proc is not None
    env = dict(os.environ)
    env.update(
        REDIS_PORT=str(redis.port),
        RABBIT_MQ_PORT=str(rabbit.port),
        QUEUE_NAME="echo",
        MODEL_BACKEND="echo",
        MODEL_ALIASES="gpt-model",
        API_PORT=str(port),
        HEARTBEAT_FILE=str(RUN / "worker.alive"),
    )
    pids = {"redis": redis.proc.pid, "rabbitmq": rabbit.proc.pid}
    worker = start_worker(env, RUN / "worker.log")
    assert worker.proc is not None
    pids["worker"] = worker.proc.pid
    STATE.write_text(json.dumps(pids))
    try:
        backend = start_backend(env, RUN / "backend.log", port=port, timeout=60)
    except (RuntimeError, TimeoutError) as e:
        sys.stderr.write(f"the backend did not start: {e}\n")
        down()
        return 1
    assert backend.proc is not None
    pids["backend"] = backend.proc.pid
    STATE.write_text(json.dumps(pids))
    url = backend.url
    r = ask(url, timeout=60)
    if r is None:
        sys.stderr.write(f"the stack did not answer; logs in {RUN}\n")
        down()
        return 1
    sys.stderr.write(
        f"stack up: backend {url} (redis :{redis.port}, rabbitmq :{rabbit.port}, logs in {RUN})\n"
        f"POST /generate {json.dumps(EXAMPLE)}\n"
    )
    print(r.text)
    sys.stderr.write("stop it with: bash tools/demo.sh down --local\n")
    return 0


def down() -> int:
    if not STATE.exists():
        return 0
    # Clients first, servers last, so the worker and backend shut down cleanly.
    for name, pid in reversed(json.loads(STATE.read_text()).items()):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            sys.stderr.write(f"{name} did not stop; killing it\n")
            os.killpg(pid, signal.SIGKILL)
    STATE.unlink()
    return 0
