"""Liveness, readiness (naming what is down) and Prometheus metrics."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.backend.metrics import DEAD_LETTERS, LIVE_WORKERS, QUEUE_CONSUMERS, QUEUE_DEPTH
from services.backend.readiness import unavailable
from services.backend.schemas.responses import METRICS_RESPONSES, READY_RESPONSES
from services.common.connections import dead_letter_queue

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (says nothing about its dependencies)."""
    return {"status": "ok"}


@router.get("/ready", responses=READY_RESPONSES)
async def ready(request: Request) -> JSONResponse:
    """Broker and result store reachable; 503 naming each component that is not."""
    down = await unavailable(request.app.state)
    if down:
        return JSONResponse(
            {"detail": f"unavailable: {', '.join(down)}", "down": down}, status_code=503
        )
    return JSONResponse({"status": "ready"})


# The handler answers with its own Response: response_class only documents the media type.
@router.get("/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
async def metrics(request: Request) -> Response:
    """Prometheus text; the fleet's gauges (queue depth, consumers, live workers) read now."""
    state = request.app.state
    models = state.jobs.router.states
    for model in models:
        LIVE_WORKERS.labels(model.model).set(model.live_workers)
    queues = sorted({model.queue for model in models})
    stats = await state.publisher.queue_stats(queues)
    for queue in queues:
        if queue in stats:
            depth, consumers = stats[queue]
            QUEUE_DEPTH.labels(queue).set(depth)
            QUEUE_CONSUMERS.labels(queue).set(consumers)
        if (dead := stats.get(dead_letter_queue(queue))) is not None:
            DEAD_LETTERS.labels(queue).set(dead[0])
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
