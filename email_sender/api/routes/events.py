"""Event bus statistics and purge."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from email_sender.api.deps import AdminScope, ReadScope, ServiceDep, client_ip
from email_sender.db import audit

router = APIRouter(prefix="/api/v1/events", tags=["events"])


@router.get("/stats")
async def stats(service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """Backlog, published, delivered, dropped and purged counts of the event bus."""
    return service.bus.stats()


@router.post("/purge")
async def purge(service: ServiceDep, principal: AdminScope, request: Request) -> dict[str, Any]:
    """Drop every pending event; answer how many were dropped."""
    purged = await service.bus.purge()
    await audit.record(
        service.db,
        actor=principal.name,
        action="events_purged",
        details={"purged": purged},
        client_ip=client_ip(request),
    )
    return {"purged": purged}
