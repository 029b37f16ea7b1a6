"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from email_sender.api.deps import ServiceDep

router = APIRouter(tags=["health"])


def _answer_503(required: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 503 here is the same report as the 200, not an error body: declared as such."""
    schema = {"type": "object", "required": [required]}
    return {503: {"description": description, "content": {"application/json": {"schema": schema}}}}


@router.get("/health", responses=_answer_503("status", "The node is down; the report says why"))
async def health(service: ServiceDep) -> JSONResponse:
    """Liveness and a summary: ok, degraded or down (503), mode, version, uptime, managers."""
    body: dict[str, Any] = await service.health()
    return JSONResponse(body, status_code=503 if body["status"] == "down" else 200)


@router.get(
    "/health/ready", responses=_answer_503("checks", "A dependency is not ready; checks say which")
)
async def ready(service: ServiceDep) -> JSONResponse:
    """Readiness: every dependency of this node probed now (503 when one is not ready)."""
    body = await service.readiness()
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
