"""Managers of this node, and discovery across the cluster."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from email_sender.api.deps import AdminScope, ReadScope, ServiceDep, client_ip
from email_sender.db import audit
from email_sender.service import HEALTH_PROBE_BUDGET

router = APIRouter(prefix="/api/v1/managers", tags=["managers"])


@router.get("/status")
async def status(service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """Every manager of this node: state, since, last error, counters."""
    await service.registry.refresh(budget=HEALTH_PROBE_BUDGET)
    return {"node_id": service.node_id, "managers": service.registry.report()}


@router.get("/discovery")
async def discovery(service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """Every node seen by heartbeat, live or lost, with its managers."""
    return await service.discovery()


@router.post("/discovery/restart")
async def restart(service: ServiceDep, principal: AdminScope, request: Request) -> dict[str, Any]:
    """Re-probe dependencies, restart failed managers, drop stale nodes."""
    result = await service.restart()
    await audit.record(
        service.db,
        actor=principal.name,
        action="managers_restarted",
        details=result,
        client_ip=client_ip(request),
    )
    return result
