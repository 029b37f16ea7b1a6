"""Accepting email: idempotency (and its race), batch results, and every bad input refused
with a clear 4xx and nothing stored — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import tracemalloc
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.api.views import email_detail
from email_sender.db.schema import emails
from email_sender.service import Service


@pytest.fixture
async def service(settings: Any) -> Any:
    from email_sender.service import build_service

    # Accept-only node: no delivery workers, so stored rows stay as they were accepted.
    # A body limit above the attachment limit, so the attachment rule itself is exercised.
    settings.server.max_body_bytes = 64 * 1024 * 1024
    node = build_service(settings, role="api")
    async with node:
        yield node


def email(**fields: Any) -> dict[str, Any]:
    return {"from": "ops@example.com", "to": ["alice@example.org"], "subject": "Hello",
            "text": "Hi", **fields}


async def stored(service: Service) -> int:
    async with service.db.connect() as connection:
        count: int = (await connection.execute(select(func.count()).select_from(emails))).scalar()
    return count


async def test_accept_commits_before_answering(service: Service, client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/emails", json=email())
    assert answer.status_code == 202
    body = answer.json()
    assert set(body) == {"id", "message_id", "status"}
    assert body["status"] == "queued"
    assert body["message_id"].endswith("@example.com>")
    detail = (await client.get(f"/api/v1/emails/{body['id']}")).json()
    assert detail["message_id"] == body["message_id"]
    assert detail["attempts"] == []


async def test_same_key_same_body_answers_the_first_email(
    service: Service, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/api/v1/emails", json=email(), headers=headers)
    again = await client.post("/api/v1/emails", json=email(), headers=headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == first.json()
    other = await client.post("/api/v1/emails", json=email(subject="Changed"), headers=headers)
    assert other.status_code == 409
    assert "different request" in other.json()["error"]["message"]
    # The key in the body works as the header does.
    body_key = await client.post("/api/v1/emails", json=email(idempotency_key="order-42"))
    assert body_key.status_code == 200 and body_key.json()["id"] == first.json()["id"]
    assert await stored(service) == 1


async def test_fifty_concurrent_requests_with_one_key_make_one_email(
    service: Service, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "race"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/emails", json=email(), headers=headers) for _ in range(50))
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(202) == 1 and codes.count(200) == 49, codes
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert await stored(service) == 1


async def test_keys_expire_after_the_retention_window(
    service: Service, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "weekly"}
    first = (await client.post("/api/v1/emails", json=email(), headers=headers)).json()
    service.outbox.idempotency_retention = 0.0
    await asyncio.sleep(0.01)
    second = await client.post("/api/v1/emails", json=email(subject="new"), headers=headers)
    assert second.status_code == 202
    assert second.json()["id"] != first["id"]


async def test_batch_accepts_valid_items_and_names_the_rejected(
    service: Service, client: httpx.AsyncClient
) -> None:
    items = [email(), email(to=["not-an-address"]), email(subject="a\r\nBcc: x@evil.com"),
             email(idempotency_key="b1"), email(idempotency_key="b1")]
    answer = await client.post("/api/v1/emails/batch", json={"emails": items})
    assert answer.status_code == 202
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (3, 2)
    results = body["items"]
    assert [item["index"] for item in results] == [0, 1, 2, 3, 4]
    assert results[1]["error"]["details"]["field"] == "to[0]"
    assert results[2]["error"]["details"]["field"] == "subject"
    assert results[3]["id"] == results[4]["id"]
    assert await stored(service) == 2


async def test_batch_over_the_limit_is_413_and_stores_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    service.intake.limits.batch_max = 3
    answer = await client.post("/api/v1/emails/batch", json={"emails": [email()] * 4})
    assert answer.status_code == 413
    assert "over the batch limit of 3" in answer.json()["error"]["message"]
    empty = await client.post("/api/v1/emails/batch", json={"emails": []})
    assert empty.status_code == 422
    assert await stored(service) == 0


def _attachment(size: int, name: str = "a.bin") -> dict[str, str]:
    return {"filename": name, "content_base64": base64.b64encode(b"x" * size).decode()}


BAD = [
    # (case, fields, status, field named in the error)
    ("no recipients", {"to": []}, 422, "to"),
    ("bad address", {"to": ["alice@@example.org"]}, 422, "to[0]"),
    ("bad cc", {"cc": ["no-at-sign"]}, 422, "cc[0]"),
    ("bad from", {"from": "ops at example"}, 422, "from"),
    ("too many recipients", {"to": [f"u{n}@example.org" for n in range(51)]}, 422, "to"),
    ("CRLF in subject", {"subject": "Hi\r\nBcc: victim@example.org"}, 422, "subject"),
    ("CRLF in header", {"headers": {"X-Campaign": "a\nBcc: v@example.org"}}, 422,
     "headers.X-Campaign"),
    ("header not allowed", {"headers": {"X-Mailer-Evil": "1"}}, 422, "headers.X-Mailer-Evil"),
    ("structural header", {"headers": {"Bcc": "v@example.org"}}, 422, "headers.Bcc"),
    ("no body", {"text": None}, 422, "text"),
    ("body too large", {"text": "x" * (2 * 1024 * 1024 + 1)}, 413, "text"),
    ("attachment not base64", {"attachments": [{"filename": "a", "content_base64": "@@@"}]}, 422,
     "attachments[0].content_base64"),
    ("attachment path in name", {"attachments": [_attachment(10, "../etc/passwd")]}, 422,
     "attachments[0].filename"),
    ("attachments too large", {"attachments": [_attachment(6 * 1024 * 1024)] * 2}, 413,
     "attachments"),
    ("metadata too large", {"metadata": {"k": "v" * 9000}}, 413, "metadata"),
    ("bad tag", {"tags": ["has space"]}, 422, "tags[0]"),
    ("naive send_at", {"send_at": "2030-01-01T10:00:00"}, 422, "send_at"),
    ("missing template variable",
     {"text": None, "subject": None, "template": {"subject": "Hi {{ name }}", "text": "x"}}, 422,
     "variables.name"),
    ("template syntax", {"text": None, "template": {"text": "{% if %}"}}, 422, "template.text"),
    ("unknown field", {"colour": "blue"}, 422, "colour"),
]


@pytest.mark.parametrize(("case", "fields", "status", "field"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_clearly_and_stores_nothing(
    service: Service, client: httpx.AsyncClient, case: str, fields: dict[str, Any], status: int,
    field: str,
) -> None:
    answer = await client.post("/api/v1/emails", json=email(**fields))
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    named = error["details"].get("field") or [p["field"] for p in error["details"]["problems"]]
    assert field == named or field in named, error
    assert error["message"]
    assert await stored(service) == 0


async def test_wrong_content_type_and_malformed_json(
    service: Service, client: httpx.AsyncClient
) -> None:
    wrong = await client.post("/api/v1/emails", content=b"to=alice",
                              headers={"content-type": "text/plain"})
    assert wrong.status_code == 415
    broken = await client.post("/api/v1/emails", content=b'{"to": [',
                               headers={"content-type": "application/json"})
    assert broken.status_code == 422
    assert "malformed JSON" in broken.json()["error"]["message"]
    assert await stored(service) == 0


async def test_bad_suppression_input(service: Service, client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/suppressions", json={"address": "nope"})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"]["problems"][0]["field"] == "address"
    bad_reason = {"address": "a@example.org", "reason": "Bad Reason!"}
    assert (await client.post("/api/v1/suppressions", json=bad_reason)).status_code == 422
    assert (await client.get("/api/v1/suppressions")).json()["items"] == []
    assert (await client.delete("/api/v1/suppressions/a@example.org")).status_code == 404
    created = await client.post("/api/v1/suppressions", json={"address": "A@Example.org"})
    assert created.status_code == 201
    again = await client.post("/api/v1/suppressions", json={"address": "a@example.org"})
    assert again.status_code == 200 and again.json()["created"] is False


async def test_detail_reports_attachment_sizes_without_decoding_them(
    service: Service, client: httpx.AsyncClient
) -> None:
    sizes = [1, 2, 3, 4, 1000]
    attachments = [_attachment(size, f"a{size}.bin") for size in sizes]
    answer = await client.post("/api/v1/emails", json=email(attachments=attachments))
    assert answer.status_code == 202, answer.text
    email_id = answer.json()["id"]
    detail = (await client.get(f"/api/v1/emails/{email_id}")).json()
    assert [item["size"] for item in detail["attachments"]] == sizes
    assert all("content_base64" not in item for item in detail["attachments"])

    # The size comes from the encoded length: showing 12 MB of attachments allocates nothing
    # near 12 MB (decoding them would).
    row = await service.outbox.get(email_id)
    row["attachments"] = [{"filename": "big.bin", "content_type": "application/octet-stream",
                           "content_base64": "QUJD" * 4_000_000}]
    tracemalloc.start()
    try:
        shown = email_detail(row)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shown["attachments"][0]["size"] == 12_000_000
    assert peak < 1_000_000, peak
