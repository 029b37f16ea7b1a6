"""Opaque page cursors for "newest first" lists: the last row's time and id, base64 JSON."""

from __future__ import annotations

import base64
import json
import math

from email_sender.errors import ValidationError


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
