"""`python -m services.worker`: serve one model until SIGTERM/SIGINT, then drain and exit."""

import asyncio
import logging
import signal
import sys
from typing import Any

from pydantic import ValidationError

from services.common.logs import setup_logging
from services.worker import metrics
from services.worker.config import WorkerSettings
from services.worker.models import ModelBackend, ModelConfigError, build_model
from services.worker.worker import Worker

log = logging.getLogger("services.worker")


async def serve(settings: WorkerSettings, model: ModelBackend) -> int:
    """Run until a signal (exit 0, after draining) or until the model dies (exit 1, at once)."""
    worker = Worker(settings, model)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(worker.start())
    stopped = asyncio.create_task(stop.wait())
    waits: set[asyncio.Future[Any]] = {starting, stopped, worker.failed}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and starting.exception() is not None:
        await worker.stop()
        raise starting.exception()  # type: ignore[misc]
    if not worker.failed.done():
        await asyncio.wait(waits - {starting}, return_when=asyncio.FIRST_COMPLETED)
    starting.cancel()
    stopped.cancel()
    if worker.failed.done():
        log.error(
            "exiting: the model failed (%s); unfinished jobs go back to the queue",
            worker.failed.result(),
        )
        await worker.stop()
        return 1
    log.info("signal received; stopping")
    await worker.stop()
    return 0


def main() -> int:
    setup_logging()
    try:
        settings = WorkerSettings()
        setup_logging(settings.LOG_LEVEL)
        model = build_model(settings)
    except ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            sys.stderr.write(f"invalid setting {loc}: {err['msg']}\n")
        return 2
    except ModelConfigError as e:
        sys.stderr.write(f"invalid setting {e}\n")
        return 2
    if settings.WORKER_METRICS_PORT:
        # Before the model loads: a scrape during a long load sees the process (and `up`).
        try:
            metrics.serve(settings)
        except OSError as e:  # the port taken, or (TLS) a file unreadable or not a key pair
            names = "WORKER_METRICS_PORT" + (" / TLS_*" if settings.WORKER_METRICS_TLS else "")
            sys.stderr.write(
                f"invalid setting {names}: cannot listen on "
                f"{settings.WORKER_METRICS_PORT}: {e.strerror or e}\n"
            )
            return 2
        scheme = "https" if settings.WORKER_METRICS_TLS else "http"
        log.info("metrics at %s://0.0.0.0:%d/metrics", scheme, settings.WORKER_METRICS_PORT)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # uvloop is an optimisation, not a requirement
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(settings, model))


if __name__ == "__main__":
    sys.exit(main())
