"""Received mail: the provider webhook, the list, one message, and operators' labels."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from email_sender.api.deps import ReadScope, SendScope, ServiceDep, client_ip
from email_sender.api.views import email_summary, epoch, inbound_detail, inbound_summary
from email_sender.errors import EmailSenderError, NotFound, ValidationError
from email_sender.inbound.receiver import Envelope, Receiver
from email_sender.service import Service

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/inbound", tags=["inbound"])

# Seconds a label request waits for the classifier to learn it; past that it learns in the
# inbound manager's next round.
RELEARN_SECONDS = 10.0

Kind = Literal["reply", "auto_reply", "out_of_office", "bounce", "complaint", "other"]
Intent = Literal[
    "interested", "negotiating", "confirmed", "declined", "question", "unsubscribe",
    "auto_reply", "out_of_office", "bounce", "complaint",
]


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The human intents (email_sender.classify.INTENTS); a test keeps the two the same.
    intent: Literal["interested", "negotiating", "confirmed", "declined", "question", "unsubscribe"]


def receiver_of(service: Service) -> Receiver:
    if service.inbound is None:
        raise NotFound("this node does not receive mail")
    return service.inbound


@router.post(
    "",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def receive(request: Request, service: ServiceDep, _: SendScope) -> JSONResponse:
    """Take one raw RFC 5322 message (a provider forwarding mail over HTTP)."""
    raw = await request.body()
    if not raw.strip():
        raise ValidationError("body", "empty: send the raw RFC 5322 message as the request body")
    received = await receiver_of(service).receive(raw, Envelope(via="webhook"))
    body = {
        "id": received.id,
        "created": received.created,
        "kind": received.kind,
        "email_id": received.email_id,
    }
    return JSONResponse(body, status_code=201 if received.created else 200)


@router.get("")
async def list_inbound(
    service: ServiceDep,
    _: ReadScope,
    kind: Kind | None = None,
    intent: Intent | None = None,
    needs_review: bool | None = None,
    email_id: Annotated[str | None, Query(max_length=36)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=320)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Received messages, newest first, with filters and cursor pagination."""
    rows, next_cursor = await receiver_of(service).store.page(
        kind=kind,
        intent=intent,
        needs_review=needs_review,
        email_id=email_id,
        sender=from_,
        since=epoch(since),
        limit=limit,
        cursor=cursor,
    )
    return {"items": [inbound_summary(row) for row in rows], "next_cursor": next_cursor}


@router.get("/{inbound_id}")
async def get_inbound(inbound_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """One received message: headers, the sender's own words, the quoted part, its intent."""
    row = await receiver_of(service).store.get(inbound_id)
    answered = None
    if row["email_id"]:
        try:
            answered = email_summary(await service.outbox.get(row["email_id"]))
        except NotFound:
            answered = None
    return inbound_detail(row, answered)


@router.post("/{inbound_id}/label")
async def label(
    inbound_id: str, body: LabelIn, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    """Correct a reply's intent; the classifier learns from it at once."""
    store = receiver_of(service).store
    row = await store.get(inbound_id)
    if row["kind"] not in ("reply", "other"):
        raise ValidationError(
            "intent", f"this message is {row['kind']}, not a person's reply: it takes no intent"
        )
    await store.save_label(row, body.intent, actor=principal.name, client_ip=client_ip(request))
    manager = service.get("inbound")
    if manager is not None:
        try:
            async with asyncio.timeout(RELEARN_SECONDS):
                await manager.relearn()
        except (EmailSenderError, TimeoutError) as exc:
            # The label is saved; the model learns it on the manager's next round.
            error = exc.message if isinstance(exc, EmailSenderError) else "timed out"
            logger.warning("label_relearn_deferred", extra={"error": error})
            manager.wake()
    return inbound_summary(await store.get(inbound_id))
