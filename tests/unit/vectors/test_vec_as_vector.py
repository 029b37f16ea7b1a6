"""as_vector: what a caller's vector must be before it reaches a store."""

from __future__ import annotations

import numpy as np
import pytest

from email_sender.errors import DimensionMismatch, ValidationError
from email_sender.vectors.store import as_vector


def test_a_good_vector_becomes_float32() -> None:
    array = as_vector([0.5, -1.0, 3.0], 3)
    assert array.dtype == np.float32
    assert array.tolist() == [0.5, -1.0, 3.0]


@pytest.mark.parametrize(
    ("vector", "reason"),
    [
        ([4.4e194, 0.0, 0.0], "float32 range"),
        ([-1e39, 0.0, 0.0], "float32 range"),
        ([float("nan"), 0.0, 0.0], "finite"),
        ([float("inf"), 0.0, 0.0], "finite"),
        ([[1.0, 2.0, 3.0]], "one-dimensional"),
        (["a", "b", "c"], "numbers"),
        (None, "required"),
    ],
)
def test_bad_vectors_name_the_field(vector: object, reason: str) -> None:
    # Warnings are errors in this suite: an overflow warning in a cast fails the test too.
    with pytest.raises(ValidationError) as caught:
        as_vector(vector, 3)  # type: ignore[arg-type]
    assert caught.value.field == "vector"
    assert reason in caught.value.reason


def test_a_wrong_size_names_both_sizes() -> None:
    with pytest.raises(DimensionMismatch) as caught:
        as_vector([1.0, 2.0], 3)
    assert "2" in str(caught.value) and "3" in str(caught.value)

