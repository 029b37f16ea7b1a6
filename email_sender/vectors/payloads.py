"""What an email or a task becomes in the vector store: the text embedded and the point payload.

The processor, the reindex command, search and the near-duplicate guard all build texts and
payloads here, so an email indexed by any of them gives the same point.

A point's ``checksum`` is :func:`~email_sender.vectors.checksums.point_checksum` over the id, the
vector and the payload *without* the ``checksum`` key (a value cannot hash itself); a verifier
pops ``checksum`` from the stored payload before recomputing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Column

from email_sender.db.schema import emails, tasks
from email_sender.mail.html import html_to_text as readable_text
from email_sender.mail.message import address_of
from email_sender.vectors.checksums import point_checksum
from email_sender.vectors.sparse import MAX_SPARSE_CHARS, Analysed
from email_sender.vectors.store import Point, SparseVector

DIRECTION_OUTBOUND = "outbound"
SNIPPET_CHARS = 200
# all-MiniLM-L6-v2 reads 256 word pieces; a longer text only costs tokenising time.
MAX_EMBED_CHARS = 4000
TASK_PREVIEW_CHARS = 500
# Qdrant reads stored payload floats back through a parser that is not always correctly rounded:
# about one full-precision epoch in nine comes back one ulp off, which would break its checksum.
# Times rounded to milliseconds (13 significant digits) always come back exactly.
TIME_DECIMALS = 3

# The columns an email point is built from.
EMAIL_COLUMNS: list[Column[Any]] = [
    emails.c.id,
    emails.c.from_addr,
    emails.c.to_addrs,
    emails.c.subject,
    emails.c.text_body,
    emails.c.html_body,
    emails.c.headers,
    emails.c.tags,
    emails.c.metadata,
    emails.c.status,
    emails.c.created_at,
    emails.c.vector_attempts,
]
TASK_COLUMNS: list[Column[Any]] = [
    tasks.c.id,
    tasks.c.email_id,
    tasks.c.text,
    tasks.c.tags,
    tasks.c.created_at,
]

_SPACE = re.compile(r"\s+")


def html_to_text(markup: str) -> str:
    """Visible text of an HTML body on one line, good enough to embed and to quote."""
    return _SPACE.sub(" ", readable_text(markup)).strip()


def body_text(text: str | None, html: str | None) -> str:
    """The plain-text body, or the HTML body's visible text when there is no plain text."""
    if text:
        return text
    if html:
        return html_to_text(html)
    return ""


def document_text(
    subject: str | None, text: str | None, html: str | None, limit: int = MAX_EMBED_CHARS
) -> str:
    """What is embedded for an email: its subject, a blank line, its body."""
    body = body_text(text, html)
    combined = f"{subject or ''}\n\n{body}".strip()
    return combined[:limit]


def snippet(text: str | None, html: str | None, limit: int = SNIPPET_CHARS) -> str:
    """The first ``limit`` characters of the body on one line, with an ellipsis when cut."""
    flat = _SPACE.sub(" ", body_text(text, html)).strip()
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rstrip() + "…"


def bare_addresses(values: Sequence[str]) -> list[str]:
    """Lower-cased bare addresses, so that payload filters match whatever the case was."""
    return [address_of(value).lower() for value in values]


def campaign_of(
    metadata: Mapping[str, Any] | None, headers: Mapping[str, str] | None
) -> str | None:
    """``metadata.campaign``, else the ``X-Campaign`` header, else None."""
    campaign = (metadata or {}).get("campaign")
    if campaign is not None and campaign != "":
        return str(campaign)
    for name, value in (headers or {}).items():
        if name.lower() == "x-campaign" and value:
            return str(value)
    return None


def email_payload(row: Any, embedding_model: str, language: str | None = None) -> dict[str, Any]:
    """The payload of an email point, without its checksum.

    ``status`` is the email's status when it was indexed: delivery does not rewrite payloads,
    so whatever must know the current status asks SQL (search resolves a ``status`` filter
    there, and so does the near-duplicate guard).
    """
    return {
        "email_id": str(row.id),
        "direction": DIRECTION_OUTBOUND,
        "from": address_of(row.from_addr).lower(),
        "to": bare_addresses(row.to_addrs or []),
        "subject": row.subject or "",
        "tags": list(row.tags or []),
        "campaign": campaign_of(row.metadata, row.headers),
        "status": row.status,
        "created_at": round(float(row.created_at), TIME_DECIMALS),
        "embedding_model": embedding_model,
        **({} if language is None else {"lang": language}),
    }


def email_document(row: Any) -> str:
    return document_text(row.subject, row.text_body, row.html_body)


def email_words(row: Any) -> str:
    """What an email's sparse vector is made of: the same text, less cut short."""
    return document_text(row.subject, row.text_body, row.html_body, MAX_SPARSE_CHARS)


def task_payload(row: Any, embedding_model: str) -> dict[str, Any]:
    """The payload of a task point, without its checksum."""
    return {
        "task_id": str(row.id),
        "email_id": row.email_id,
        "text": (row.text or "")[:TASK_PREVIEW_CHARS],
        "tags": list(row.tags or []),
        "created_at": round(float(row.created_at), TIME_DECIMALS),
        "embedding_model": embedding_model,
    }


def checked_point(
    point_id: str,
    vector: np.ndarray,
    payload: dict[str, Any],
    sparse: SparseVector | None = None,
) -> Point:
    """A point whose payload carries the checksum of (id, vector, payload, sparse vector)."""
    vector32 = np.asarray(vector, dtype=np.float32)
    checksum = point_checksum(point_id, vector32, payload, sparse)
    return Point(point_id, vector32, {**payload, "checksum": checksum}, sparse)


def email_points(
    rows: Sequence[Any],
    vectors: np.ndarray,
    embedding_model: str,
    analysed: Sequence[Analysed],
) -> list[Point]:
    return [
        checked_point(
            str(row.id), vector, email_payload(row, embedding_model, words.language), words.sparse
        )
        for row, vector, words in zip(rows, vectors, analysed, strict=True)
    ]


def task_points(rows: Sequence[Any], vectors: np.ndarray, embedding_model: str) -> list[Point]:
    return [
        checked_point(str(row.id), vector, task_payload(row, embedding_model))
        for row, vector in zip(rows, vectors, strict=True)
    ]
