"""Semantic search, similar emails, collections, raw point search, the near-duplicate guard and
tasks, through the HTTP API on SQLite and PostgreSQL with the real Qdrant Edge store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from email_sender.api.app import create_app
from email_sender.db.schema import emails
from email_sender.service import Service, build_service
from email_sender.vectors.embedders import HashingEmbedder
from email_sender.vectors.payloads import document_text
from tests.conftest import asgi_client, make_settings, wait_for
from tests.support.vectors import fast_processor

CORPUS = [
    ("ana@band.example", ["booking"], "Hall availability in May",
     "The concert hall is available on the 12th and 13th of May for your band."),
    ("ana@band.example", ["fees"], "Artist fee proposal",
     "Our fee proposal is 2000 euros plus travel and accommodation for two nights."),
    ("bob@duo.example", ["booking"], "Stage plot and technical rider",
     "Please send the technical rider with the stage plot and the backline needs."),
    ("bob@duo.example", ["refusal"], "Sorry, we are fully booked",
     "Unfortunately the venue is fully booked this season and we must decline."),
]


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url, **{"embedder.provider": "hashing"})
    service = build_service(settings)
    fast_processor(service)
    async with service:
        yield service


@pytest.fixture
async def api(node: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(node) as http:
        yield http


async def vector_states(node: Service) -> dict[str, str]:
    async with node.db.connect() as connection:
        rows = await connection.execute(select(emails.c.id, emails.c.vector_state))
        return {row.id: row.vector_state for row in rows}


async def accept(api: httpx.AsyncClient, node: Service, items: list[dict[str, Any]]) -> list[str]:
    ids = []
    for item in items:
        answer = await api.post("/api/v1/emails", json=item)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])

    async def indexed() -> bool:
        found = await vector_states(node)
        return all(found.get(i) == "indexed" for i in ids)

    await wait_for(indexed, timeout=20)
    return ids


@pytest.fixture
async def corpus(api: httpx.AsyncClient, node: Service) -> list[str]:
    return await accept(
        api,
        node,
        [
            {"from": "desk@venue.example", "to": [to], "subject": subject, "text": text,
             "tags": tags}
            for to, tags, subject, text in CORPUS
        ],
    )


async def test_text_search_ranks_and_filters(api: httpx.AsyncClient, corpus: list[str]) -> None:
    answer = await api.post("/api/v1/search", json={"query": "technical rider stage plot"})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert results[0]["id"] == corpus[2]
    assert set(results[0]) == {"id", "score", "subject", "snippet", "payload"}
    assert results[0]["subject"] == "Stage plot and technical rider"
    assert results[0]["snippet"].startswith("Please send the technical rider")
    assert results[0]["payload"]["to"] == ["bob@duo.example"]

    filtered = await api.post(
        "/api/v1/search",
        json={"query": "technical rider stage plot", "filter": {"to": "Ana@Band.example"}},
    )
    assert {hit["id"] for hit in filtered.json()["results"]} == {corpus[0], corpus[1]}

    by_tags = await api.post(
        "/api/v1/search",
        json={"query": "venue", "limit": 10,
              "filter": {"tags": ["refusal", "fees"], "direction": "outbound"}},
    )
    assert {hit["id"] for hit in by_tags.json()["results"]} == {corpus[1], corpus[3]}

    future = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    nothing = await api.post(
        "/api/v1/search", json={"query": "venue", "filter": {"created_at": {"gte": future}}}
    )
    assert nothing.json()["results"] == []
    everything = await api.post(
        "/api/v1/search",
        json={"query": "venue", "filter": {"created_at": {"gte": time.time() - 3600}}},
    )
    assert len(everything.json()["results"]) == 4


async def test_each_search_mode_answers_in_the_same_shape(
    api: httpx.AsyncClient, corpus: list[str]
) -> None:
    # "backline" is in one email only: the words find it alone, whatever their order.
    sparse = await api.post("/api/v1/search", json={"query": "Backline", "mode": "sparse"})
    assert sparse.status_code == 200, sparse.text
    assert [hit["id"] for hit in sparse.json()["results"]] == [corpus[2]]
    assert sparse.json()["results"][0]["payload"]["lang"] == "en"
    for mode in ("hybrid", "dense"):
        answer = await api.post("/api/v1/search", json={"query": "backline", "mode": mode})
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert results[0]["id"] == corpus[2]
        assert set(results[0]) == {"id", "score", "subject", "snippet", "payload"}
        # Meaning ranks every email; hybrid keeps them all after the one the word found.
        assert len(results) == 4
    by_tag = await api.post(
        "/api/v1/search",
        json={"query": "venue booked", "mode": "sparse", "filter": {"tags": "refusal"}},
    )
    assert [hit["id"] for hit in by_tag.json()["results"]] == [corpus[3]]
    sent = await api.post(
        "/api/v1/search",
        json={"query": "backline", "mode": "hybrid", "filter": {"status": "failed"}},
    )
    assert sent.json()["results"] == []


async def test_vector_search_and_similar(api: httpx.AsyncClient, corpus: list[str]) -> None:
    _, _, subject, text = CORPUS[1]
    vector = HashingEmbedder(384).embed_sync([document_text(subject, text, None)])[0]
    answer = await api.post("/api/v1/search", json={"vector": vector.tolist(), "limit": 2})
    results = answer.json()["results"]
    assert results[0]["id"] == corpus[1]
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(results) == 2

    similar = await api.get(f"/api/v1/emails/{corpus[0]}/similar", params={"limit": 3})
    assert similar.status_code == 200
    ids = [hit["id"] for hit in similar.json()["results"]]
    assert corpus[0] not in ids and len(ids) == 3
    missing = await api.get("/api/v1/emails/00000000-0000-0000-0000-000000000000/similar")
    assert missing.status_code == 404
    not_uuid = await api.get("/api/v1/emails/nope/similar")
    assert not_uuid.status_code == 422
    assert "id" in not_uuid.json()["error"]["message"]


async def test_collections_and_raw_point_search(
    api: httpx.AsyncClient, corpus: list[str]
) -> None:
    listing = (await api.get("/api/v1/collections")).json()
    by_name = {item["name"]: item for item in listing["items"]}
    assert set(by_name) == {"emails", "task_vectors"}
    emails_info = (await api.get("/api/v1/collections/emails")).json()
    assert emails_info == by_name["emails"]
    assert (emails_info["points_count"], emails_info["dimension"]) == (4, 384)
    assert (emails_info["distance"], emails_info["backend"]) == ("Cosine", "qdrant-edge")
    assert emails_info["payload_indexes"]["to"] == "keyword"
    assert emails_info["payload_indexes"]["created_at"] == "float"
    assert (await api.get("/api/v1/collections/nothing")).status_code == 404

    vector = HashingEmbedder(384).embed_sync(["technical rider stage plot"])[0].tolist()
    qdrant_filter = {
        "must": [
            {"key": "tags", "match": {"any": ["booking", "refusal"]}},
            {"key": "from", "match": {"value": "desk@venue.example"}},
            {"key": "created_at", "range": {"gte": time.time() - 3600}},
        ]
    }
    answer = await api.post(
        "/api/v1/collections/emails/points/search",
        json={"vector": vector, "limit": 3, "filter": qdrant_filter},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok" and body["time"] >= 0
    assert body["result"][0]["id"] == corpus[2]
    assert set(body["result"][0]) == {"id", "score", "payload"}
    assert {hit["id"] for hit in body["result"]} == {corpus[0], corpus[2], corpus[3]}

    refused = await api.post(
        "/api/v1/collections/emails/points/search",
        json={"vector": vector, "filter": {"should": [{"key": "tags", "match": {"value": "x"}}]}},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["field"] == "filter.should"
    text_match = await api.post(
        "/api/v1/collections/emails/points/search",
        json={"vector": vector, "filter": {"must": [{"key": "subject", "match": {"text": "x"}}]}},
    )
    assert text_match.status_code == 422
    assert text_match.json()["error"]["details"]["field"] == "filter.must[0].match"


async def test_points_are_browsed_page_by_page(api: httpx.AsyncClient, corpus: list[str]) -> None:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 3}
    for _ in range(3):
        answer = await api.get("/api/v1/collections/emails/points", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"items", "next_offset"}
        seen += body["items"]
        if body["next_offset"] is None:
            break
        params["offset"] = body["next_offset"]
    assert sorted(item["id"] for item in seen) == sorted(corpus)
    assert all(set(item) == {"id", "payload"} for item in seen)
    assert {item["payload"]["email_id"] for item in seen} == set(corpus)

    with_vector = await api.get(
        "/api/v1/collections/emails/points", params={"limit": 1, "with_vector": "true"}
    )
    [item] = with_vector.json()["items"]
    assert len(item["vector"]) == 384
    assert with_vector.json()["next_offset"] is not None


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("emails", {"limit": 0}, 422, "limit"),
        ("emails", {"limit": 1001}, 422, "limit"),
        ("emails", {"limit": "ten"}, 422, "limit"),
        ("emails", {"offset": "not-an-id"}, 422, "offset"),
        ("emails", {"with_vector": "maybe"}, 422, "with_vector"),
        ("nothing", {}, 404, None),
    ],
)
async def test_browsing_refuses_bad_queries_by_name(
    api: httpx.AsyncClient, node: Service, path: str, params: dict[str, Any], status: int,
    field: str | None,
) -> None:
    answer = await api.get(f"/api/v1/collections/{path}/points", params=params)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    if field is None:
        assert "nothing" in error["message"]
    else:
        assert field in error["message"]


async def test_a_vector_of_the_wrong_size_is_refused(
    api: httpx.AsyncClient, node: Service, corpus: list[str]
) -> None:
    for path in ("/api/v1/search", "/api/v1/collections/emails/points/search"):
        answer = await api.post(path, json={"vector": [0.1, 0.2, 0.3]})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"] == "invalid vector size: got 3, expected 384"
    tasks = await api.post("/api/v1/tasks/search", json={"vector": [0.5] * 12})
    assert tasks.status_code == 400
    assert "got 12, expected 384" in tasks.json()["error"]["message"]
    assert await node.get("qdrant_manager").store.count("emails") == 4


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "vector": [0.1]}, "query, vector"),
        ({"limit": 3}, "query, vector"),
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "limit": 101}, "limit"),
        ({"query": ""}, "query"),
        ({"query": "x", "filter": {"sender": "a"}}, "filter.sender"),
        ({"query": "x", "filter": {"created_at": {}}}, "filter.created_at"),
        ({"query": "x", "filter": {"created_at": {"after": 1}}}, "filter.created_at.after"),
        ({"query": "x", "filter": {"to": []}}, "filter.to"),
        ({"query": "x", "filter": {"tags": 3}}, "filter.tags"),
        ({"query": "x", "extra": 1}, "extra"),
        ({"vector": ["a"]}, "vector.0"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"vector": [0.1] * 384, "mode": "sparse"}, "mode"),
    ],
)
async def test_bad_search_bodies_name_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    answer = await api.post("/api/v1/search", json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["message"]


async def test_near_duplicate_of_a_sent_email_is_held(
    api: httpx.AsyncClient, node: Service
) -> None:
    first = {"from": "desk@venue.example", "to": ["carol@trio.example"],
             "subject": "Your booking is confirmed for June 3",
             "text": "We confirm the booking of the main hall on June 3 from 8pm."}
    [first_id] = await accept(api, node, [first])

    async def sent() -> bool:
        return (await api.get(f"/api/v1/emails/{first_id}")).json()["status"] == "sent"

    await wait_for(sent, timeout=20)

    again = await api.post("/api/v1/emails", json={**first, "dedupe": True})
    assert again.json()["status"] == "held", again.text
    held = (await api.get(f"/api/v1/emails/{again.json()['id']}")).json()
    assert held["held_reason"]["reason"] == "near_duplicate"
    assert held["held_reason"]["duplicate_of"] == first_id
    assert held["held_reason"]["score"] >= 0.95

    elsewhere = await api.post(
        "/api/v1/emails", json={**first, "to": ["dave@quartet.example"], "dedupe": True}
    )
    assert elsewhere.json()["status"] == "queued"
    different = await api.post(
        "/api/v1/emails",
        json={**first, "subject": "Invoice", "text": "Please find the invoice attached.",
              "dedupe": True},
    )
    assert different.json()["status"] == "queued"
    not_asked = await api.post("/api/v1/emails", json=first)  # dedupe is off by default
    assert not_asked.json()["status"] == "queued"


async def test_tasks_are_stored_indexed_and_searchable(
    api: httpx.AsyncClient, node: Service, corpus: list[str]
) -> None:
    created = await api.post(
        "/api/v1/tasks",
        json={"text": "Call the promoter about the backline rental", "email_id": corpus[2],
              "tags": ["follow-up"]},
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["vector_state"] == "indexed" and task["email_id"] == corpus[2]
    await api.post("/api/v1/tasks", json={"text": "Renew the venue insurance policy"})

    found = await api.post("/api/v1/tasks/search", json={"query": "backline rental promoter"})
    assert found.status_code == 200
    top = found.json()["results"][0]
    assert (top["id"], top["text"], top["email_id"]) == (
        task["id"], "Call the promoter about the backline rental", corpus[2]
    )
    tagged = await api.post(
        "/api/v1/tasks/search", json={"query": "insurance", "filter": {"tags": "follow-up"}}
    )
    assert [hit["id"] for hit in tagged.json()["results"]] == [task["id"]]

    unknown = await api.post(
        "/api/v1/tasks", json={"text": "x", "email_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["field"] == "email_id"
    empty = await api.post("/api/v1/tasks", json={"text": ""})
    assert empty.status_code == 422 and "text" in empty.json()["error"]["message"]
    assert await node.get("qdrant_manager").store.count("task_vectors") == 2


async def test_an_api_node_searches_without_indexing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, **{"embedder.provider": "hashing"})
    node = build_service(settings, role="api")
    assert node.get("vector_processor") is None
    async with node:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answer = await http.post("/api/v1/search", json={"query": "anything"})
            assert answer.status_code == 200 and answer.json() == {"results": []}
            assert (await http.get("/api/v1/collections/emails")).json()["points_count"] == 0
