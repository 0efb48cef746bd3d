"""The API application: `uvicorn services.backend.main:app`.

`lifespan` makes the process-wide connections (one Redis pool, one AMQP connection, one result
subscription) and keeps them on `app.state`; routes reach them through `deps.py`.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.backend.api.guard import EdgeGuard
from services.backend.api.main import routes, telemetry
from services.backend.auth import ApiKeys
from services.backend.config import get_settings
from services.backend.deps import check_api_key
from services.backend.errors import install_error_handlers
from services.backend.job_service import JobService
from services.backend.metrics import JOBS_WAITING
from services.backend.publisher import JobPublisher
from services.backend.routing import ModelRouter
from services.backend.waiter import ResultWaiter
from services.common import heap
from services.common.connections import make_redis
from services.common.keys import KeySpace
from services.common.logs import setup_logging
from services.common.store import ResultStore

log = logging.getLogger(__name__)

STARTUP_ATTEMPTS = 30
SHUTDOWN_STEP_S = 5.0


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    setup_logging(settings.LOG_LEVEL)
    instance = uuid.uuid4().hex[:12]
    keys = KeySpace(settings.REDIS_PREFIX)
    redis = make_redis(settings, max_connections=256)
    store = ResultStore(redis, keys, settings.RESULT_TTL)
    waiter = ResultWaiter(redis, store, keys.notify_channel(instance))
    router = ModelRouter(redis, keys, settings.QUEUE_NAME, settings.REGISTRY_REFRESH_S)
    publisher = await JobPublisher.open(
        settings,
        timeout=settings.PUBLISH_TIMEOUT,
        name=f"backend-{instance}",
        attempts=STARTUP_ATTEMPTS,
    )
    await waiter.start()
    await router.start()
    JOBS_WAITING.set_function(lambda: waiter.pending)
    api_keys = ApiKeys(settings.api_keys, settings.API_KEYS_FILE)
    await api_keys.start()
    app.state.api_keys = api_keys
    app.state.redis = redis
    app.state.publisher = publisher
    app.state.waiter = waiter
    app.state.jobs = JobService(
        router=router,
        publisher=publisher,
        store=store,
        waiter=waiter,
        timeout=settings.JOB_TIMEOUT,
    )
    heap.settle()
    log.info("backend %s ready (default queue %r)", instance, settings.QUEUE_NAME)
    try:
        yield
    finally:
        for name, step in (
            ("api keys", api_keys.close),
            ("router", router.close),
            ("waiter", waiter.close),
            ("publisher", publisher.close),
            ("store", store.aclose),
            ("redis", redis.aclose),
        ):
            # Bounded: a peer that went away must not keep the process from exiting.
            try:
                await asyncio.wait_for(step(), SHUTDOWN_STEP_S)
            except TimeoutError:
                log.warning("closing the %s took over %.0f s; abandoned", name, SHUTDOWN_STEP_S)


def create_app() -> FastAPI:
    app = FastAPI(
        title="llm-wrap",
        version="0.1.0",
        lifespan=lifespan,
        routes=routes(),
        telemetry=telemetry(),
    )
    install_error_handlers(app)
    settings = get_settings()
    app.add_middleware(
        EdgeGuard,
        max_body_bytes=settings.MAX_BODY_BYTES,
        public=settings.public_endpoints,
        check_key=check_api_key,
    )
    return app


app = create_app()
