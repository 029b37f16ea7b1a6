"""Mail received by the embedded capture sink (only where it runs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from email_sender.api.deps import ReadScope, ServiceDep
from email_sender.errors import NotFound

router = APIRouter(prefix="/api/v1/sink", tags=["sink"])


@router.get("/messages")
async def messages(
    service: ServiceDep,
    _: ReadScope,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Messages the capture sink received, newest first."""
    sink = service.get("smtp_sink")
    if sink is None:
        raise NotFound("no capture sink runs on this node (smtp.relays are configured)")
    items = sink.messages(limit=limit, offset=offset)
    more = offset + len(items) < sink.count
    return {
        "items": items,
        "total": sink.count,
        "next_cursor": str(offset + len(items)) if more else None,
    }
