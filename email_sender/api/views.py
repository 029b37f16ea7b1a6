"""How stored rows are shown by the API: ISO-8601 times, public field names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def base64_size(encoded: str) -> int:
    """Decoded size of canonical base64 (as stored) from its length, without decoding it:
    a detail view of an email with 10 MB of attachments must not allocate 10 MB."""
    length = len(encoded)
    padding = encoded[-2:].count("=") if length else 0
    return length // 4 * 3 - padding


def email_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "message_id": row["message_id"],
        "status": row["status"],
        "from": row["from_addr"],
        "to": row["to_addrs"],
        "cc": row["cc_addrs"],
        "subject": row["subject"],
        "tags": row["tags"],
        "attempt_count": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]),
        "last_error": row["last_error"],
        "vector_state": row["vector_state"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "sent_at": iso(row["sent_at"]),
    }


def email_detail(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **email_summary(row),
        "bcc": row["bcc_addrs"],
        "reply_to": row["reply_to"],
        "text": row["text_body"],
        "html": row["html_body"],
        "headers": row["headers"],
        "metadata": row["metadata"],
        "attachments": [
            {
                "filename": item["filename"],
                "content_type": item["content_type"],
                "size": base64_size(item["content_base64"]),
            }
            for item in row["attachments"]
        ],
        "held_reason": row["held_reason"],
        "attempts": [
            {
                "n": attempt["n"],
                "relay": attempt["relay"],
                "smtp_code": attempt["smtp_code"],
                "response": attempt["response"],
                "outcome": attempt["outcome"],
                "worker": attempt["worker"],
                "started_at": iso(attempt["started_at"]),
                "duration_ms": round(attempt["duration_ms"], 2),
            }
            for attempt in row["attempts_log"]
        ],
    }


def inbound_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "message_id": row["message_id"],
        "via": row["via"],
        "from": row["from_addr"],
        "from_name": row["from_name"],
        "to": row["to_addrs"],
        "subject": row["subject"],
        "kind": row["kind"],
        "intent": row["intent"],
        "confidence": row["confidence"],
        "layer": row["layer"],
        "needs_review": bool(row["needs_review"]),
        "label": row["label"],
        "email_id": row["email_id"],
        "thread_by": row["thread_by"],
        "vector_state": row["vector_state"],
        "size": row["size"],
        "received_at": iso(row["received_at"]),
    }


def inbound_detail(row: dict[str, Any], answered: dict[str, Any] | None) -> dict[str, Any]:
    return {
        **inbound_summary(row),
        "mail_from": row["mail_from"],
        "rcpt_to": row["rcpt_to"],
        "headers": [{"name": name, "value": value} for name, value in row["headers"]],
        "in_reply_to": row["in_reply_to"],
        "references": row["references"],
        "own_words": row["own_words"],
        "quoted": row["quoted"],
        "text": row["text_body"],
        "defects": row["defects"],
        "details": row["details"],
        "classification": {
            "intent": row["intent"],
            "confidence": row["confidence"],
            "layer": row["layer"],
            "needs_review": bool(row["needs_review"]),
            "scores": row["scores"],
            "label": row["label"],
        },
        "raw_kept": bool(row["raw_kept"]),
        "raw_expires_at": iso(row["raw_expires_at"]),
        "answers": answered,
    }


def contact_view(row: dict[str, Any]) -> dict[str, Any]:
    consent = (
        {"basis": row["consent_basis"], "source": row["consent_source"]}
        if row["consent_basis"] else None
    )
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "organisation": row["organisation"],
        "city": row["city"],
        "region": row["region"],
        "country": row["country"],
        "timezone": row["timezone"],
        "language": row["language"],
        "tags": row["tags"],
        "attributes": row["attributes"],
        "consent": consent,
        "status": row["status"],
        "notes": row["notes"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
