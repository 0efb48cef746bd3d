"""All routers of the API, gathered in one place."""

from fastapi import APIRouter

from services.backend.api.routes import health, jobs

api_router = APIRouter()
api_router.include_router(jobs.router)
api_router.include_router(health.router)
