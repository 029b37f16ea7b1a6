"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from email_sender.api.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(service: ServiceDep) -> JSONResponse:
    """Liveness and a summary: ok, degraded or down (503), mode, version, uptime, managers."""
    body: dict[str, Any] = await service.health()
    return JSONResponse(body, status_code=503 if body["status"] == "down" else 200)


@router.get("/health/ready")
async def ready(service: ServiceDep) -> JSONResponse:
    """Readiness: every dependency of this node probed now (503 when one is not ready)."""
    body = await service.readiness()
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
