"""Delivery through a real SMTP server, on SQLite and PostgreSQL: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from email_sender.api.app import create_app
from email_sender.db.schema import emails
from email_sender.service import Service, build_service
from email_sender.settings import RelaySettings
from tests.conftest import asgi_client, make_settings, wait_for
from tests.support.smtp_server import SmtpTestServer

FAST_RETRIES = {
    "delivery.backoff.base": 0.05,
    "delivery.backoff.max": 0.2,
    "delivery.backoff.jitter": 0.0,
    "delivery.poll_interval": 0.05,
}


def relay(server: SmtpTestServer, **options: Any) -> RelaySettings:
    return RelaySettings(url=server.url, tls="none", **options)


@pytest.fixture
async def node(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> AsyncIterator[Service]:
    settings = make_settings(
        tmp_path, database_url, **FAST_RETRIES, **{"smtp.relays": [relay(smtp_server)]}
    )
    service = build_service(settings)
    async with service:
        yield service


@pytest.fixture
async def api(node: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(node) as http:
        yield http


def email(n: int = 0, **fields: Any) -> dict[str, Any]:
    return {"from": "Bookings <bookings@example.com>", "to": [f"guest{n}@example.org"],
            "subject": f"Booking {n}", "text": f"Your booking number {n} is confirmed.", **fields}


async def statuses(node: Service) -> dict[str, int]:
    counts: dict[str, int] = await node.outbox.counts_by_status()
    return counts


async def test_thousand_emails_each_delivered_exactly_once(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    ids = []
    for start in (0, 500):
        answer = await api.post(
            "/api/v1/emails/batch", json={"emails": [email(start + n) for n in range(500)]}
        )
        assert answer.status_code == 202
        assert answer.json()["accepted"] == 500
        ids += [item["message_id"] for item in answer.json()["items"]]
    await wait_for(lambda: len(smtp_server.messages()) >= 1000, timeout=90)
    await wait_for(lambda: _all_sent(node, 1000), timeout=30)
    received = smtp_server.accepted_ids()
    assert sorted(received) == sorted(ids)
    assert set(received.values()) == {1}


async def _all_sent(node: Service, expected: int) -> bool:
    return (await statuses(node)).get("sent", 0) == expected


async def test_relay_down_defers_then_everything_goes_once_it_is_back(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    smtp_server.mode = "drop"
    for n in range(20):
        assert (await api.post("/api/v1/emails", json=email(n))).status_code == 202
    await wait_for(lambda: _has_deferred(node, 20), timeout=30)
    assert smtp_server.messages() == []
    smtp_server.mode = "250"
    await wait_for(lambda: _all_sent(node, 20), timeout=30)
    assert len(smtp_server.accepted_ids()) == 20
    assert set(smtp_server.accepted_ids().values()) == {1}


async def _has_deferred(node: Service, expected: int) -> bool:
    async with node.db.connect() as connection:
        count = (await connection.execute(
            select(func.count()).select_from(emails).where(emails.c.attempts >= 1,
                                                           emails.c.status != "sent")
        )).scalar()
    return count == expected


async def test_550_fails_and_suppresses_then_no_smtp_for_that_address(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    smtp_server.mode = "550"
    first = (await api.post("/api/v1/emails", json=email(1))).json()
    await wait_for(lambda: _status_is(api, first["id"], "failed"))
    detail = (await api.get(f"/api/v1/emails/{first['id']}")).json()
    assert [a["smtp_code"] for a in detail["attempts"]] == [550]
    assert detail["attempts"][0]["outcome"] == "failed"
    listed = (await api.get("/api/v1/suppressions")).json()["items"]
    assert [(row["address"], row["reason"], row["smtp_code"]) for row in listed] == [
        ("guest1@example.org", "hard_bounce", 550)
    ]
    smtp_server.mode = "250"
    attempts_before = smtp_server.data_attempts
    second = (await api.post("/api/v1/emails", json=email(1, subject="again"))).json()
    await wait_for(lambda: _status_is(api, second["id"], "suppressed"))
    assert smtp_server.data_attempts == attempts_before
    # Removing the suppression lets mail through again.
    assert (await api.delete("/api/v1/suppressions/guest1@example.org")).status_code == 200
    third = (await api.post("/api/v1/emails", json=email(1, subject="third"))).json()
    await wait_for(lambda: _status_is(api, third["id"], "sent"))


async def _status_is(api: httpx.AsyncClient, email_id: str, status: str) -> bool:
    return (await api.get(f"/api/v1/emails/{email_id}")).json()["status"] == status


async def test_451_then_250_is_sent_after_a_retry(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    smtp_server.mode = "451"
    accepted = (await api.post("/api/v1/emails", json=email(7))).json()
    smtp_server.script(accepted["message_id"], [451])
    await wait_for(lambda: _status_is(api, accepted["id"], "deferred"))
    smtp_server.mode = "250"
    await wait_for(lambda: _status_is(api, accepted["id"], "sent"))
    detail = (await api.get(f"/api/v1/emails/{accepted['id']}")).json()
    codes = [attempt["smtp_code"] for attempt in detail["attempts"]]
    assert codes[-1] == 250 and set(codes[:-1]) == {451} and len(codes) >= 2
    assert detail["attempts"][0]["relay"] == smtp_server.relay_name
    assert smtp_server.accepted_count(accepted["message_id"]) == 1


async def test_deferrals_end_in_failure_after_max_attempts(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(tmp_path, database_url, **FAST_RETRIES,
                             **{"smtp.relays": [relay(smtp_server)], "delivery.max_attempts": 3})
    smtp_server.mode = "451"
    async with build_service(settings) as node:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            accepted = (await api.post("/api/v1/emails", json=email(3))).json()
            await wait_for(lambda: _status_is(api, accepted["id"], "failed"))
            detail = (await api.get(f"/api/v1/emails/{accepted['id']}")).json()
            assert [a["outcome"] for a in detail["attempts"]] == ["deferred", "deferred", "failed"]
            smtp_server.mode = "250"
            retried = await api.post(f"/api/v1/emails/{accepted['id']}/retry")
            assert retried.json()["status"] == "queued"
            await wait_for(lambda: _status_is(api, accepted["id"], "sent"))


async def test_failover_to_the_next_relay(
    tmp_path: Path, database_url: str, smtp_server: SmtpTestServer
) -> None:
    from tests.conftest import free_port

    dead = RelaySettings(url=f"smtp://127.0.0.1:{free_port()}", tls="none", timeout=2)
    settings = make_settings(tmp_path, database_url, **FAST_RETRIES,
                             **{"smtp.relays": [dead, relay(smtp_server)]})
    async with build_service(settings) as node:
        accepted = await node.intake.accept(_email_in(email(5)))
        await wait_for(lambda: smtp_server.accepted_count(accepted.message_id) == 1)

        async def recorded() -> bool:
            # The relay has the message before the worker records the attempt.
            return (await node.outbox.get(accepted.id))["status"] == "sent"

        await wait_for(recorded)
        detail = await node.outbox.get(accepted.id)
        assert detail["attempts_log"][-1]["relay"] == smtp_server.relay_name


def _email_in(values: dict[str, Any]) -> Any:
    from email_sender.mail.message import EmailIn

    return EmailIn.model_validate(values)


async def test_read_only_and_maintenance_pause_delivery(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    for mode in ("readonly", "enable"):
        await api.post(f"/api/v1/maintenance/{mode}")
        # Written behind the API's back, as another node still in normal mode could.
        paused = await node.intake.accept(_email_in(email(2, subject=mode)))
        await asyncio.sleep(0.5)
        assert smtp_server.accepted_count(paused.message_id) == 0
        assert (await node.outbox.get(paused.id))["status"] == "queued"
        await api.post("/api/v1/maintenance/disable")
        message_id = paused.message_id
        await wait_for(lambda: smtp_server.accepted_count(message_id) == 1)  # noqa: B023


async def test_cancel_queued_only_and_list_filters(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    later = (await api.post("/api/v1/emails", json=email(
        1, send_at="2999-01-01T00:00:00Z", tags=["newsletter"]))).json()
    now = (await api.post("/api/v1/emails", json=email(2, tags=["receipt"]))).json()
    await wait_for(lambda: _status_is(api, now["id"], "sent"))
    assert (await api.post(f"/api/v1/emails/{later['id']}/cancel")).json()["status"] == "cancelled"
    refused = await api.post(f"/api/v1/emails/{now['id']}/cancel")
    assert refused.status_code == 409
    assert "cannot cancel an email that is sent" in refused.json()["error"]["message"]
    assert (await api.post(f"/api/v1/emails/{now['id']}/retry")).status_code == 409
    assert (await api.post("/api/v1/emails/nope/cancel")).status_code == 404
    assert (await api.get("/api/v1/emails/nope")).status_code == 404

    sent = (await api.get("/api/v1/emails", params={"status": "sent"})).json()["items"]
    assert [row["id"] for row in sent] == [now["id"]]
    tagged = (await api.get("/api/v1/emails", params={"tag": "newsletter"})).json()["items"]
    assert [row["id"] for row in tagged] == [later["id"]]
    to = (await api.get("/api/v1/emails", params={"to": "GUEST2@example.org"})).json()["items"]
    assert [row["id"] for row in to] == [now["id"]]
    page = (await api.get("/api/v1/emails", params={"limit": 1})).json()
    rest = (await api.get("/api/v1/emails", params={"limit": 1, "cursor": page["next_cursor"]}))
    assert {page["items"][0]["id"], rest.json()["items"][0]["id"]} == {now["id"], later["id"]}
    assert rest.json()["next_cursor"] is None
    assert (await api.get("/api/v1/emails", params={"cursor": "garbage"})).status_code == 422
    assert (await api.get("/api/v1/emails", params={"limit": 0})).status_code == 422


async def test_sink_lists_what_it_received(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, **FAST_RETRIES)
    async with build_service(settings) as node:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            accepted = (await api.post("/api/v1/emails", json=email(9))).json()
            await wait_for(lambda: _status_is(api, accepted["id"], "sent"))
            items = (await api.get("/api/v1/sink/messages")).json()["items"]
            assert [(m["message_id"], m["to"], m["subject"]) for m in items] == [
                (accepted["message_id"], ["guest9@example.org"], "Booking 9")
            ]


async def test_list_filters_take_wildcards_literally(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    plain = (await api.post("/api/v1/emails", json=email(1))).json()
    odd = (await api.post("/api/v1/emails", json=email(
        2, to=["under_score@example.org"], tags=["50_off"]))).json()

    async def listed(**params: str) -> list[str]:
        answer = await api.get("/api/v1/emails", params=params)
        assert answer.status_code == 200
        return [row["id"] for row in answer.json()["items"]]

    assert await listed(to="%") == []
    assert await listed(to="_") == [odd["id"]]
    assert await listed(**{"from": "%"}) == []
    assert await listed(tag="50_off") == [odd["id"]]
    assert await listed(tag="5__off") == []
    assert sorted(await listed(**{"from": "bookings@"})) == sorted([plain["id"], odd["id"]])


async def test_a_cut_after_data_is_retried_and_counted_as_uncertain(
    node: Service, api: httpx.AsyncClient, smtp_server: SmtpTestServer
) -> None:
    accepted = (await api.post("/api/v1/emails", json=email(8, send_at="2999-01-01T00:00:00Z")))
    message = accepted.json()
    smtp_server.script(message["message_id"], ["drop", 250])
    async with node.db.transaction() as connection:
        await connection.execute(
            emails.update().where(emails.c.id == message["id"]).values(next_attempt_at=0)
        )
    node.get("email_sender").wake()
    await wait_for(lambda: _status_is(api, message["id"], "sent"))
    detail = (await api.get(f"/api/v1/emails/{message['id']}")).json()
    assert [a["outcome"] for a in detail["attempts"]] == ["deferred", "sent"]
    assert node.get("email_sender").counters["uncertain"] == 1
    assert smtp_server.attempts_by_id[message["message_id"]] == 2
