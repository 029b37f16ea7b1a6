"""Opaque page cursors for "newest first" lists: the last row's time and id, base64 JSON.

A list is ordered by a time column, then the id (so rows of one instant keep an order); a page
reads one row more than it shows, to know whether another follows.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from sqlalchemy import Select, and_, or_

from email_sender.errors import ValidationError

Rows = list[dict[str, Any]]


def newest_first(
    query: Select[Any], at: Any, row_id: Any, *, cursor: str | None, limit: int
) -> Select[Any]:
    """``query`` newest first by ``at`` then ``row_id``, after the cursor's row, ``limit`` + 1
    rows."""
    if cursor:
        moment, last_id = decode_cursor(cursor)
        query = query.where(or_(at < moment, and_(at == moment, row_id < last_id)))
    return query.order_by(at.desc(), row_id.desc()).limit(limit + 1)


def page_of(rows: Rows, limit: int, at: str = "created_at") -> tuple[Rows, str | None]:
    """The page of ``rows`` (read with one more than ``limit``) and the next page's cursor,
    None on the last page."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1][at], rows[-1]["id"])


def encode_cursor(at: float, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, row_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (time, id) a cursor carries; ValidationError on ``cursor`` for anything else."""
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        at = float(at)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValidationError("cursor", "not a cursor this API gave out") from exc
    if not math.isfinite(at) or not isinstance(row_id, str):
        raise ValidationError("cursor", "not a cursor this API gave out")
    return at, row_id
