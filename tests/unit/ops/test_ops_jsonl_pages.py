"""The JSONL export pages through its points as the stores do: by the id the next page starts at."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_sender.errors import ValidationError
from email_sender.ops.jsonl import JsonlStore
from tests.unit.ops.test_ops_jsonl import DIM, points


async def test_pages_follow_the_file_order_by_next_offset(tmp_path: Path) -> None:
    written = points(7)
    store = JsonlStore(tmp_path / "export.jsonl")
    await store.ensure_collection("emails", DIM, "Cosine")
    await store.upsert("emails", written)

    pages, offset = [], None
    while True:
        page, offset = await store.scroll_page("emails", limit=3, offset=offset)
        pages.append([point.id for point in page])
        if offset is None:
            break
    assert pages == [[p.id for p in written[i:i + 3]] for i in (0, 3, 6)]
    [first], _ = await store.scroll_page("emails", limit=1, with_vectors=True)
    assert first.vector is not None
    with pytest.raises(ValidationError, match="offset"):
        await store.scroll_page("emails", offset="not-an-id")
    await store.close()
