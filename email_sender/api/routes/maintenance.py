"""Service modes: normal, read-only, maintenance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from email_sender.api.deps import AdminScope, ReadScope, ServiceDep, client_ip
from email_sender.modes import Mode

router = APIRouter(prefix="/api/v1/maintenance", tags=["maintenance"])


class ModeChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


async def set_mode(
    service: ServiceDep,
    principal: AdminScope,
    request: Request,
    mode: Mode,
    change: ModeChange | None,
) -> dict[str, Any]:
    """Switch the mode, audited under the principal's name; the console switches through it."""
    await service.modes.set(
        mode,
        actor=principal.name,
        reason=change.reason if change else None,
        client_ip=client_ip(request),
    )
    return await service.modes.describe()


@router.get("")
async def current(service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """The current mode, why and since when."""
    return await service.modes.describe()


@router.post("/readonly")
async def readonly(
    service: ServiceDep, principal: AdminScope, request: Request, change: ModeChange | None = None
) -> dict[str, Any]:
    """Read-only: writes answer 503, delivery pauses, reads and search go on."""
    return await set_mode(service, principal, request, Mode.READ_ONLY, change)


@router.post("/enable")
async def enable(
    service: ServiceDep, principal: AdminScope, request: Request, change: ModeChange | None = None
) -> dict[str, Any]:
    """Maintenance: everything but health and maintenance answers 503."""
    return await set_mode(service, principal, request, Mode.MAINTENANCE, change)


@router.post("/disable")
async def disable(
    service: ServiceDep, principal: AdminScope, request: Request, change: ModeChange | None = None
) -> dict[str, Any]:
    """Back to normal: writes and delivery resume."""
    return await set_mode(service, principal, request, Mode.NORMAL, change)
