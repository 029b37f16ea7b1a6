"""Qdrant's filter JSON translated to the store's flat filter format, or refused by field."""

from __future__ import annotations

from typing import Any

import pytest

from email_sender.errors import ValidationError
from email_sender.vectors.search import translate_qdrant_filter
from email_sender.vectors.store import parse_filter


def test_must_conditions_become_flat_ones() -> None:
    flat = translate_qdrant_filter(
        {
            "must": [
                {"key": "status", "match": {"value": "sent"}},
                {"key": "to", "match": {"any": ["a@x.example", "b@x.example"]}},
                {"key": "created_at", "range": {"gte": 10, "lt": None}},
                {"key": "created_at", "range": {"lt": 20}},
            ]
        }
    )
    assert flat == {
        "status": "sent",
        "to": ["a@x.example", "b@x.example"],
        "created_at": {"gte": 10, "lt": 20},
    }
    assert len(parse_filter(flat)) == 3


def test_flat_filters_and_none_pass_through() -> None:
    assert translate_qdrant_filter(None) is None
    assert translate_qdrant_filter({"tags": "x"}) == {"tags": "x"}
    assert translate_qdrant_filter({"must": {"key": "tags", "match": {"value": "x"}}}) == {
        "tags": "x"
    }


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"should": []}, "filter.should"),
        ({"must": [], "must_not": []}, "filter.must_not"),
        ({"must": "tags"}, "filter.must"),
        ({"must": [{"match": {"value": 1}}]}, "filter.must[0]"),
        ({"must": [{"key": "a", "match": {"text": "x"}}]}, "filter.must[0].match"),
        ({"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]}, "filter.must[0]"),
        ({"must": [{"key": "a", "range": {"between": 1}}]}, "filter.must[0].range"),
        ({"must": [{"key": "a", "has_id": [1]}]}, "filter.must[0]"),
        ({"must": [{"filter": {"must": []}}]}, "filter.must[0]"),
        (
            {"must": [{"key": "a", "match": {"value": 1}}, {"key": "a", "match": {"value": 2}}]},
            "filter.must[1]",
        ),
        (
            {"must": [{"key": "a", "range": {"gt": 1}}, {"key": "a", "range": {"gt": 2}}]},
            "filter.must[1].range.gt",
        ),
    ],
)
def test_what_cannot_be_translated_is_refused_by_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        translate_qdrant_filter(spec)
    assert caught.value.field == field
