"""Page cursors: what the API gives out comes back; anything else is a 422 on ``cursor``."""

from __future__ import annotations

import base64
import json

import pytest

from email_sender.db.cursors import decode_cursor, encode_cursor
from email_sender.errors import ValidationError


def forged(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor(1764633600.25, "abc")) == (1764633600.25, "abc")


@pytest.mark.parametrize(
    "cursor",
    ["garbage", forged([10**309, "x"]), forged(["nan", "x"]), forged([1.0, 5]),
     forged([1.0]), forged({"at": 1}), base64.urlsafe_b64encode(b"[1e999, \"x\"]").decode()],
)
def test_a_forged_cursor_is_refused_by_name(cursor: str) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_cursor(cursor)
    assert caught.value.field == "cursor"
