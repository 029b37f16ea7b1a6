"""Emails: accept (single and batch), list, read, cancel, retry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query
from fastapi.responses import JSONResponse

from email_sender.api.deps import ReadScope, SendScope, ServiceDep
from email_sender.api.views import email_detail, email_summary, epoch
from email_sender.mail.message import EmailIn

router = APIRouter(prefix="/api/v1/emails", tags=["emails"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Same key and body: the first answer again. Same key, other body: 409.",
    ),
]


@router.post("", status_code=202)
async def send(
    email: EmailIn, service: ServiceDep, _: SendScope, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Accept one email into the outbox; 202 once committed (200 for a repeated key)."""
    accepted = await service.intake.accept(email, idempotency_key=idempotency_key)
    body = {"id": accepted.id, "message_id": accepted.message_id, "status": accepted.status}
    return JSONResponse(body, status_code=202 if accepted.created else 200)


@router.post("/batch", status_code=202)
async def send_batch(
    service: ServiceDep,
    _: SendScope,
    emails: Annotated[list[dict[str, Any]], Body(embed=True, min_length=1)],
) -> dict[str, Any]:
    """Accept many emails: each is validated alone; valid ones are accepted, others say why."""
    items = await service.intake.accept_batch(emails)
    rejected = sum(1 for item in items if "error" in item)
    return {"accepted": len(items) - rejected, "rejected": rejected, "items": items}


@router.get("")
async def list_emails(
    service: ServiceDep,
    _: ReadScope,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,16}$")] = None,
    to: Annotated[str | None, Query(max_length=320)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=320)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """List emails, newest first, with filters and cursor pagination."""
    rows, next_cursor = await service.outbox.page(
        status=status,
        to=to,
        sender=from_,
        tag=tag,
        since=epoch(since),
        until=epoch(until),
        limit=limit,
        cursor=cursor,
    )
    return {"items": [email_summary(row) for row in rows], "next_cursor": next_cursor}


@router.get("/{email_id}")
async def get_email(email_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """One email with every delivery attempt."""
    return email_detail(await service.outbox.get(email_id))


@router.post("/{email_id}/cancel")
async def cancel(email_id: str, service: ServiceDep, _: SendScope) -> dict[str, Any]:
    """Cancel a queued or deferred email (409 for any other status)."""
    return await service.outbox.cancel(email_id)


@router.post("/{email_id}/retry")
async def retry(email_id: str, service: ServiceDep, _: SendScope) -> dict[str, Any]:
    """Queue a failed email again, due now (409 for any other status)."""
    result = await service.outbox.retry(email_id)
    for listener in service.intake.listeners:
        listener()
    return result
