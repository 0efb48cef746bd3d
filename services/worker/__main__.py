"""`python -m services.worker`: serve one model until SIGTERM/SIGINT, then drain and exit."""

import asyncio
import logging
import signal
import sys

from pydantic import ValidationError

from services.common.logs import setup_logging
from services.worker.config import WorkerSettings
from services.worker.consumer import Worker
from services.worker.models import build_model

log = logging.getLogger("services.worker")


async def serve(settings: WorkerSettings) -> None:
    worker = Worker(settings, build_model(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(worker.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and starting.exception() is not None:
        await worker.stop()
        raise starting.exception()  # type: ignore[misc]
    await stopped
    log.info("signal received; stopping")
    starting.cancel()
    await worker.stop()


def main() -> int:
    setup_logging()
    try:
        settings = WorkerSettings()
    except ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            sys.stderr.write(f"invalid setting {loc}: {err['msg']}\n")
        return 2
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # uvloop is an optimisation, not a requirement
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
