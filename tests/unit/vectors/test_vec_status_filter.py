"""A ``status`` search filter is taken out of the store filter and answered by SQL."""

from __future__ import annotations

import pytest

from email_sender.errors import ValidationError
from email_sender.vectors.search import _split_status


def test_no_status_leaves_the_filter_as_it_is() -> None:
    assert _split_status(None) == ({}, None)
    assert _split_status({"tags": "booking"}) == ({"tags": "booking"}, None)


def test_a_status_or_a_list_of_statuses_is_taken_out() -> None:
    assert _split_status({"status": "sent", "tags": "booking"}) == ({"tags": "booking"}, ("sent",))
    assert _split_status({"status": ["sent", "failed"]}) == ({}, ("sent", "failed"))


@pytest.mark.parametrize("bad", [{"gte": 1}, 3, [1, 2], True])
def test_a_status_that_is_not_text_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ValidationError) as refused:
        _split_status({"status": bad})
    assert refused.value.field == "filter.status"
