"""Point ids: unsigned 64-bit integers or UUIDs, as Qdrant allows, each with one text form."""

from __future__ import annotations

import uuid

import pytest

from email_sender.errors import ValidationError
from email_sender.vectors.store import native_point_id, point_id


@pytest.mark.parametrize(("given", "canonical"), [
    (0, "0"),
    ("0", "0"),
    ("42", "42"),
    ("007", "7"),
    (2**64 - 1, str(2**64 - 1)),
    (str(2**64 - 1), str(2**64 - 1)),
    ("6F1C2E7A-1B2C-4D5E-8F90-A1B2C3D4E5F6", "6f1c2e7a-1b2c-4d5e-8f90-a1b2c3d4e5f6"),
    (uuid.UUID(int=5), str(uuid.UUID(int=5))),
])
def test_valid_ids_have_one_text_form(given: object, canonical: str) -> None:
    assert point_id(given) == canonical


@pytest.mark.parametrize("given", [-1, 2**64, str(2**64), "-1", "1.5", "", "email-1", True,
                                   1.0, None, "١٢"])
def test_anything_else_is_refused_naming_the_id(given: object) -> None:
    with pytest.raises(ValidationError) as refused:
        point_id(given)
    assert refused.value.field == "id"
    assert "not an unsigned 64-bit integer or a UUID" in str(refused.value)


def test_native_ids_are_ints_for_integers_and_text_for_uuids() -> None:
    assert native_point_id(point_id(7)) == 7
    assert native_point_id(point_id(2**64 - 1)) == 2**64 - 1
    some = str(uuid.uuid4())
    assert native_point_id(point_id(some)) == some
