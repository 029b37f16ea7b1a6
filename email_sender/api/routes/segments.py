"""Segments: saved filters over contacts, and the contacts each one selects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from email_sender.api.deps import ReadScope, SendScope, ServiceDep, client_ip
from email_sender.api.views import contact_view, iso
from email_sender.db import audit
from email_sender.errors import ValidationError
from email_sender.outreach.segment_filter import SegmentFilter

router = APIRouter(prefix="/api/v1/segments", tags=["segments"])

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class NewSegment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    filter: SegmentFilter = Field(default_factory=SegmentFilter, description="{} selects all")


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    filter: SegmentFilter | None = Field(None, description="replaces the whole filter")


def segment_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "filter": row["filter"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


@router.get("")
async def list_segments(service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """Every segment, by name."""
    return {"items": [segment_view(row) for row in await service.segments.list()]}


@router.post("", status_code=201)
async def create_segment(
    item: NewSegment, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    """Save a filter under a name (409 when the name is taken)."""
    row = await service.segments.create(item.name, item.filter)
    await audit.record(
        service.db, actor=principal.name, action="segment_created", target=row["id"],
        client_ip=client_ip(request),
    )
    return segment_view(row)


@router.get("/{segment_id}")
async def get_segment(segment_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """One segment."""
    return segment_view(await service.segments.get(segment_id))


@router.patch("/{segment_id}")
async def change_segment(
    segment_id: str,
    patch: SegmentPatch,
    request: Request,
    service: ServiceDep,
    principal: SendScope,
) -> dict[str, Any]:
    """Rename it or replace its filter."""
    if "name" in patch.model_fields_set and patch.name is None:
        raise ValidationError("name", "cannot be null")
    if "filter" in patch.model_fields_set and patch.filter is None:
        raise ValidationError("filter", "cannot be null: {} selects every contact")
    row = await service.segments.update(segment_id, name=patch.name, filter=patch.filter)
    await audit.record(
        service.db, actor=principal.name, action="segment_changed", target=segment_id,
        details={"fields": sorted(patch.model_fields_set)}, client_ip=client_ip(request),
    )
    return segment_view(row)


@router.delete("/{segment_id}", status_code=204)
async def delete_segment(
    segment_id: str, request: Request, service: ServiceDep, principal: SendScope
) -> Response:
    """Forget the segment; its contacts stay."""
    await service.segments.delete(segment_id)
    await audit.record(
        service.db, actor=principal.name, action="segment_deleted", target=segment_id,
        client_ip=client_ip(request),
    )
    return Response(status_code=204)


@router.get("/{segment_id}/contacts")
async def segment_contacts(
    segment_id: str,
    service: ServiceDep,
    _: ReadScope,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """The contacts the segment selects now, newest first."""
    rows, next_cursor = await service.segments.page_contacts(segment_id, limit, cursor)
    return {"items": [contact_view(row) for row in rows], "next_cursor": next_cursor}
