"""Contacts: create, list, read, change (status through the lifecycle), delete or erase, history,
import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from email_sender.api.deps import ReadScope, SendScope, ServiceDep, client_ip
from email_sender.api.errors import error_response
from email_sender.api.views import contact_view, iso
from email_sender.db import audit
from email_sender.outreach.contacts import Change
from email_sender.outreach.erasure import erase_contact
from email_sender.outreach.fields import ContactFields, NewContact
from email_sender.outreach.importer import Format, import_contacts

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])

IMPORT_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
}


class ContactPatch(ContactFields):
    status: str | None = Field(None, description="a move the lifecycle allows")
    reason: str | None = Field(None, max_length=2000, description="kept in the history")


@router.get("/lifecycle")
async def lifecycle(service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """The statuses, their labels and the moves each allows."""
    described = service.contacts.lifecycle
    return {"initial": described.initial, "statuses": described.describe()}


@router.post("", status_code=201)
async def create_contact(
    item: NewContact, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    """Add a contact (409 when the address is one already)."""
    row = await service.contacts.create(item, Change("user", principal.name, "created"))
    await audit.record(
        service.db, actor=principal.name, action="contact_created", target=row["id"],
        client_ip=client_ip(request),
    )
    return contact_view(row)


@router.get("")
async def list_contacts(
    service: ServiceDep,
    _: ReadScope,
    status: Annotated[str | None, Query(max_length=32)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200, description="address, name, place")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Contacts, newest first."""
    if status is not None:
        service.contacts.lifecycle.check_known(status)
    rows, next_cursor = await service.contacts.page(
        status=status, tag=tag, text=q, limit=limit, cursor=cursor
    )
    return {"items": [contact_view(row) for row in rows], "next_cursor": next_cursor}


@router.post(
    "/import",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                content_type: {"schema": {"type": "string"}} for content_type in IMPORT_TYPES
            },
        }
    },
)
async def import_(request: Request, service: ServiceDep, principal: SendScope) -> Response:
    """Import CSV (text/csv) or JSON lines (application/x-ndjson): a result for every row."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = IMPORT_TYPES.get(content_type)
    if fmt is None:
        return error_response(
            415, "unsupported_media_type",
            f"Content-Type must be one of {', '.join(IMPORT_TYPES)}, got {content_type or 'none'}",
        )
    report = await import_contacts(
        service.contacts, await request.body(), fmt, Change("import", principal.name)
    )
    counts = report.counts()
    await audit.record(
        service.db, actor=principal.name, action="contacts_imported", details=counts,
        client_ip=client_ip(request),
    )
    return JSONResponse({**counts, "rows": [vars(result) for result in report.rows]})


@router.get("/{contact_id}")
async def get_contact(contact_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """One contact."""
    return contact_view(await service.contacts.get(contact_id))


@router.patch("/{contact_id}")
async def change_contact(
    contact_id: str,
    patch: ContactPatch,
    request: Request,
    service: ServiceDep,
    principal: SendScope,
) -> dict[str, Any]:
    """Change fields; a status change must be a move the lifecycle allows, and is recorded."""
    fields = ContactFields.model_validate(
        patch.model_dump(exclude_unset=True, exclude={"status", "reason"})
    )
    row = await service.contacts.update(
        contact_id, fields, Change("user", principal.name, patch.reason), status=patch.status
    )
    await audit.record(
        service.db, actor=principal.name, action="contact_changed", target=contact_id,
        details={"fields": sorted(patch.model_fields_set)}, client_ip=client_ip(request),
    )
    return contact_view(row)


@router.delete(
    "/{contact_id}",
    status_code=204,
    responses={200: {"description": "erase=true: what was erased, counted"}},
)
async def delete_contact(
    contact_id: str,
    request: Request,
    service: ServiceDep,
    principal: SendScope,
    erase: Annotated[bool, Query(description="also erase its mail and vectors, and "
                                             "suppress the address (right to erasure)")] = False,
) -> Response:
    """Remove a contact and its history; with erase=true, everything kept about it."""
    if erase:
        report = await erase_contact(
            service.db, service.get("qdrant_manager"), service.settings.collections.emails,
            contact_id, actor=principal.name, client_ip=client_ip(request),
        )
        return JSONResponse(report.as_dict())
    await service.contacts.delete(contact_id)
    await audit.record(
        service.db, actor=principal.name, action="contact_deleted", target=contact_id,
        client_ip=client_ip(request),
    )
    return Response(status_code=204)


@router.get("/{contact_id}/history")
async def history(contact_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """Every move of the contact's status, oldest first, with what made it and why."""
    rows = await service.contacts.history(contact_id)
    return {
        "contact_id": contact_id,
        "items": [
            {
                "from": row["from_status"],
                "to": row["to_status"],
                "source": row["source"],
                "actor": row["actor"],
                "reason": row["reason"],
                "at": iso(row["at"]),
            }
            for row in rows
        ],
    }
