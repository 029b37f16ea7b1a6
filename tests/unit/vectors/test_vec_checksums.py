"""Point checksums and the order-independent collection digest."""

from __future__ import annotations

import hashlib
import json
import random
import struct

import numpy as np
import pytest

from email_sender.vectors.checksums import (
    DigestAccumulator,
    collection_digest,
    point_checksum,
)

POINT_ID = "3f0c7c1e-2a7b-4d2c-9a53-0b6f1f1f6a01"
VECTOR = [0.25, -1.5, 3.0]
PAYLOAD = {"subject": "Réunion", "tags": ["a", "b"], "created_at": 1_700_000_000}


def test_checksum_is_sha256_of_id_float32_le_bytes_and_sorted_json() -> None:
    expected = hashlib.sha256(
        POINT_ID.encode()
        + struct.pack("<3f", *VECTOR)
        + json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()

    assert point_checksum(POINT_ID, VECTOR, PAYLOAD) == expected


def test_checksum_ignores_payload_key_order_and_vector_container() -> None:
    reordered = dict(reversed(list(PAYLOAD.items())))

    assert point_checksum(POINT_ID, np.array(VECTOR, dtype=np.float64), reordered) == (
        point_checksum(POINT_ID, VECTOR, PAYLOAD)
    )


@pytest.mark.parametrize(
    ("point_id", "vector", "payload"),
    [
        ("3f0c7c1e-2a7b-4d2c-9a53-0b6f1f1f6a02", VECTOR, PAYLOAD),
        (POINT_ID, [0.25, -1.5, 3.0001], PAYLOAD),
        (POINT_ID, VECTOR, {**PAYLOAD, "created_at": 1_700_000_001}),
        (POINT_ID, VECTOR, {**PAYLOAD, "tags": ["b", "a"]}),
    ],
    ids=["id", "vector-component", "payload-value", "list-order"],
)
def test_any_change_changes_the_checksum(point_id: str, vector: list[float], payload: dict) -> None:
    assert point_checksum(point_id, vector, payload) != point_checksum(POINT_ID, VECTOR, PAYLOAD)


def _checksums(count: int) -> list[str]:
    rng = np.random.default_rng(7)
    return [
        point_checksum(f"00000000-0000-4000-8000-{n:012d}", rng.standard_normal(4), {"n": n})
        for n in range(count)
    ]


def test_collection_digest_does_not_depend_on_order() -> None:
    checksums = _checksums(50)
    shuffled = checksums[:]
    random.Random(3).shuffle(shuffled)

    assert collection_digest(shuffled) == collection_digest(checksums)


def test_collection_digest_sees_a_missing_a_changed_and_a_duplicated_point() -> None:
    checksums = _checksums(10)
    digest = collection_digest(checksums)

    assert collection_digest(checksums[:-1]) != digest
    assert collection_digest([*checksums[:-1], _checksums(11)[-1]]) != digest
    assert collection_digest([*checksums, checksums[0]]) != digest
    assert collection_digest([checksums[0], checksums[0]]) != collection_digest([])


def test_accumulator_streams_to_the_same_digest() -> None:
    accumulator = DigestAccumulator()
    returned = accumulator.add_point(POINT_ID, VECTOR, PAYLOAD)
    for checksum in _checksums(5):
        accumulator.add(checksum)

    assert returned == point_checksum(POINT_ID, VECTOR, PAYLOAD)
    assert accumulator.count == 6
    assert accumulator.hexdigest() == collection_digest([returned, *_checksums(5)])


def test_accumulator_refuses_what_is_not_a_sha256_digest() -> None:
    with pytest.raises(ValueError, match="not a SHA-256"):
        DigestAccumulator().add("abc")
