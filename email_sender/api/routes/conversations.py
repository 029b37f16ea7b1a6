"""Conversations: the replies to one email, and the whole thread in order, both directions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from email_sender.api.deps import ReadScope, ServiceDep
from email_sender.api.routes.inbound import receiver_of
from email_sender.api.views import inbound_summary, iso
from email_sender.inbound.store import HUMAN_KINDS
from email_sender.mail.sent import SentEmails
from email_sender.service import Service

router = APIRouter(prefix="/api/v1", tags=["inbound"])

# Follow-ups of one email kept in a thread (outbound messages that reference it).
MAX_FOLLOW_UPS = 100


@router.get("/emails/{email_id}/replies")
async def replies(email_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """Every message received about one email (replies, auto-replies, bounces), oldest first."""
    await service.outbox.get(email_id)  # 404 for an unknown email
    rows = await receiver_of(service).store.answering(email_id)
    return {
        "email_id": email_id,
        "human_replies": sum(1 for row in rows if row["kind"] in HUMAN_KINDS),
        "items": [{**inbound_summary(row), "own_words": row["own_words"]} for row in rows],
    }


@router.get("/conversations/{email_id}")
async def conversation(email_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    """The thread started by one email: what we sent and what came back, in time order."""
    first = await service.outbox.get(email_id)
    sent = [first, *await _follow_ups(service, first)]
    store = receiver_of(service).store
    messages = [_outbound(row) for row in sent]
    for row in sent:
        messages.extend(_inbound(item) for item in await store.answering(row["id"]))
    messages.sort(key=lambda item: (item["at"] or "", item["id"]))
    return {
        "email_id": email_id,
        "subject": first["subject"],
        "status": first["status"],
        "messages": messages,
    }


async def _follow_ups(service: Service, first: dict[str, Any]) -> list[dict[str, Any]]:
    """Our later emails whose References or In-Reply-To name the first one."""
    ids = await SentEmails(service.db).follow_ups(first, limit=MAX_FOLLOW_UPS)
    return [await service.outbox.get(follow_up) for follow_up in ids]


def _outbound(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "direction": "outbound",
        "id": row["id"],
        "at": iso(row["sent_at"] or row["created_at"]),
        "from": row["from_addr"],
        "to": row["to_addrs"],
        "subject": row["subject"],
        "status": row["status"],
        "text": row["text_body"],
    }


def _inbound(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "direction": "inbound",
        "id": row["id"],
        "at": iso(row["received_at"]),
        "from": row["from_addr"],
        "to": row["to_addrs"],
        "subject": row["subject"],
        "kind": row["kind"],
        "intent": row["intent"],
        "confidence": row["confidence"],
        "needs_review": bool(row["needs_review"]),
        "answers": row["email_id"],
        "text": row["own_words"],
    }
