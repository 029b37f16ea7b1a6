"""A subject or header holding a Unicode line separator is refused at accept, never stored.

Such an email used to be accepted and then stay ``sending`` forever: the email package refuses
the header when the message is built, long after the 202.
"""

from __future__ import annotations

import httpx
import pytest

from email_sender.service import Service

SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c"]


def email(**fields: object) -> dict[str, object]:
    return {"from": "booking@example.com", "to": ["venue@example.org"], "subject": "Proposal",
            "text": "A date for our band?", **fields}


async def stored(service: Service) -> int:
    return sum((await service.outbox.counts_by_status()).values())


@pytest.mark.parametrize("separator", SEPARATORS, ids=lambda c: f"U+{ord(c):04X}")
async def test_single_accept_refuses_with_the_field(
    service: Service, client: httpx.AsyncClient, separator: str
) -> None:
    answer = await client.post("/api/v1/emails", json=email(subject=f"Date{separator}Bcc: x"))
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["details"]["field"] == "subject"
    assert f"U+{ord(separator):04X}" in error["message"]
    header = await client.post(
        "/api/v1/emails", json=email(headers={"X-Campaign": f"spring{separator}2027"})
    )
    assert header.status_code == 422
    assert header.json()["error"]["details"]["field"] == "headers.X-Campaign"
    assert await stored(service) == 0


async def test_batch_refuses_the_item_and_keeps_the_others(
    service: Service, client: httpx.AsyncClient
) -> None:
    answer = await client.post("/api/v1/emails/batch", json={"emails": [
        email(subject="Fine"), email(subject="Bad\u2028subject"), email(subject="Also fine"),
    ]})
    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"] == 2
    refused = body["items"][1]
    assert "id" not in refused
    assert refused["error"]["details"]["field"] == "subject"
    assert await stored(service) == 2
