"""Outgoing webhooks against a real HTTP receiver: signed posts, retries, failures, deletion,
two nodes on one database, a bounded stop, and the subscription API."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from email_sender.api.app import create_app
from email_sender.db.engine import Database
from email_sender.events import Event, MemoryEventBus
from email_sender.service import Service, build_service
from email_sender.settings import ApiKeySettings, EventBusSettings, Settings, WebhookSettings
from email_sender.webhooks.dispatcher import WebhookDispatcher
from email_sender.webhooks.signing import verify
from email_sender.webhooks.store import WebhookStore
from tests.conftest import free_port, make_settings, wait_for
from tests.support.http_receiver import Receiver
from tests.support.http_receiver import receiver_factory as receiver_factory  # the fixture

SECRET = "receiver-secret-0123456789"
# Small backoff so that retries happen within a test; a short timeout for unreachable URLs.
# The receivers run on loopback, which a default node refuses to post to.
FAST = WebhookSettings(
    timeout=2.0, max_attempts=3, backoff_base=0.05, backoff_max=0.2, allow_private_networks=True
)


# The parts a dispatcher runs on


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
async def bus() -> AsyncIterator[MemoryEventBus]:
    events = MemoryEventBus(EventBusSettings())
    await events.start()
    yield events
    await events.stop()


@pytest.fixture
async def dispatchers() -> AsyncIterator[list[WebhookDispatcher]]:
    """Started dispatchers to stop at the end, whatever the test did."""
    started: list[WebhookDispatcher] = []
    yield started
    for dispatcher in started:
        await dispatcher.stop()


async def start_dispatcher(
    dispatchers: list[WebhookDispatcher],
    db: Database,
    bus: MemoryEventBus,
    settings: WebhookSettings = FAST,
) -> WebhookDispatcher:
    dispatcher = WebhookDispatcher(settings, db, bus)
    await dispatcher.start()
    dispatchers.append(dispatcher)
    return dispatcher


async def only_delivery(store: WebhookStore, webhook_id: str) -> dict[str, Any]:
    rows, _ = await store.deliveries(webhook_id)
    assert len(rows) == 1, rows
    return rows[0]


async def settled(store: WebhookStore, webhook_id: str) -> bool:
    rows, _ = await store.deliveries(webhook_id)
    return bool(rows) and all(row["status"] != "pending" for row in rows)


def attempts_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.message == "webhook_attempt"]


# Delivery


async def test_a_destination_that_resolves_inside_is_never_posted_to(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    # Subscribed while private networks were allowed; the dispatcher checks again at each post.
    receiver = receiver_factory()
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["*"], secret=SECRET)
    refusing = FAST.model_copy(update={"allow_private_networks": False, "max_attempts": 1})
    await start_dispatcher(dispatchers, db, bus, refusing)

    await bus.publish("email.bounced", email_id="e-1")
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)

    assert receiver.requests == []
    delivery = await only_delivery(store, hook["id"])
    assert delivery["status"] == "failed"
    assert "resolves to a local or private address" in delivery["last_error"]


async def test_a_matching_event_is_posted_signed_and_recorded(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory()
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["email.bounced"], secret=SECRET)
    dispatcher = await start_dispatcher(dispatchers, db, bus)

    await bus.publish("email.sent", email_id="not-wanted")
    event = Event("email.bounced", {"email_id": "e-1", "code": 550})
    await bus.publish_event(event)
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)

    [request] = receiver.requests
    assert request.path == "/hook"
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-email-sender-event"] == "email.bounced"
    assert verify(SECRET, headers["x-email-sender-timestamp"], request.body,
                  headers["x-email-sender-signature"])
    assert not verify("another-secret-0123456789", headers["x-email-sender-timestamp"],
                      request.body, headers["x-email-sender-signature"])
    body = json.loads(request.body)
    assert body["id"] == event.id
    assert body["type"] == "email.bounced"
    assert body["data"] == {"email_id": "e-1", "code": 550}
    assert datetime.fromisoformat(body["time"]).timestamp() == pytest.approx(event.time, abs=1e-3)

    delivery = await only_delivery(store, hook["id"])
    assert headers["x-email-sender-delivery"] == delivery["id"]
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
    assert delivery["response_code"] == 200
    assert delivery["event_type"] == "email.bounced"
    assert delivery["delivered_at"] is not None
    assert dispatcher.info()["delivered"] == 1


async def test_two_failures_then_success_is_delivered_on_the_third_attempt(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory(statuses=[500, 500, 200])
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["*"], secret=SECRET)
    dispatcher = await start_dispatcher(dispatchers, db, bus)

    await bus.publish("email.sent", email_id="e-2")
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)

    delivery = await only_delivery(store, hook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == (
        "delivered", 3, 200
    )
    assert len(receiver.requests) == 3
    # The same delivery each time, so that a receiver can deduplicate.
    assert {r.headers["x-email-sender-delivery"] for r in receiver.requests} == {delivery["id"]}
    # Backed off between attempts (base 0.05 s, jitter -20 %).
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert all(gap >= 0.04 for gap in gaps), gaps
    assert dispatcher.info()["retried"] == 2
    assert dispatcher.info()["delivered"] == 1


async def test_always_failing_receiver_fails_after_max_attempts_each_logged(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="email_sender.webhooks.dispatcher")
    receiver = receiver_factory(statuses=[500])
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["email.sent"], secret=SECRET)
    dispatcher = await start_dispatcher(dispatchers, db, bus)

    await bus.publish("email.sent", email_id="e-3")
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)
    await asyncio.sleep(0.5)  # longer than backoff_max: a fourth attempt would show

    delivery = await only_delivery(store, hook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == (
        "failed", 3, 500
    )
    assert delivery["last_error"].startswith("HTTP 500: answer 500")
    assert len(delivery["last_error"]) < 400  # an excerpt, not the 100 KB answer
    assert len(receiver.requests) == 3
    logged = attempts_logged(caplog)
    assert [(r.attempt, r.status, r.response_code) for r in logged] == [  # type: ignore[attr-defined]
        (1, "pending", 500), (2, "pending", 500), (3, "failed", 500)
    ]
    assert dispatcher.info()["failed"] == 1


async def test_unreachable_url_is_retried_then_failed(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="email_sender.webhooks.dispatcher")
    store = WebhookStore(db)
    hook = await store.create(
        url=f"http://127.0.0.1:{free_port()}/nobody-listens", events=["*"], secret=SECRET
    )
    await start_dispatcher(dispatchers, db, bus)

    await bus.publish("inbound.received", inbound_id="i-1")
    await wait_for(lambda: settled(store, hook["id"]), timeout=15)

    delivery = await only_delivery(store, hook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == (
        "failed", 3, None
    )
    assert "Connect" in delivery["last_error"]
    assert [r.attempt for r in attempts_logged(caplog)] == [1, 2, 3]  # type: ignore[attr-defined]


async def test_gone_fails_at_once(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory(statuses=[410, 200])
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["*"], secret=SECRET)
    await start_dispatcher(dispatchers, db, bus)

    await bus.publish("email.replied", email_id="e-4")
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)
    await asyncio.sleep(0.3)

    delivery = await only_delivery(store, hook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == (
        "failed", 1, 410
    )
    assert len(receiver.requests) == 1


async def test_redirects_are_not_followed(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory(statuses=[302])
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["*"], secret=SECRET)
    await start_dispatcher(dispatchers, db, bus)

    await bus.publish("email.sent", email_id="e-5")
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)

    delivery = await only_delivery(store, hook["id"])
    assert (delivery["status"], delivery["response_code"]) == ("failed", 302)
    assert len(receiver.requests) == 3


async def test_finished_deliveries_past_the_retention_are_purged_pending_ones_kept(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory()
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["*"], secret=SECRET)
    await store.enqueue(Event("email.sent", {"n": 1}), [hook["id"]])
    dispatcher = await start_dispatcher(dispatchers, db, bus)
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)
    await dispatcher.stop()
    await store.enqueue(Event("email.sent", {"n": 2}), [hook["id"]])  # nobody posts it
    rows, _ = await store.deliveries(hook["id"])
    assert sorted(row["status"] for row in rows) == ["delivered", "pending"]

    assert await store.purge_finished(before=time.time() - 3600) == 0  # all too recent
    assert await store.purge_finished(before=time.time() + 1) == 1
    left, _ = await store.deliveries(hook["id"])
    assert [row["status"] for row in left] == ["pending"]


async def test_deleting_a_webhook_stops_its_deliveries(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory(statuses=[500])
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["*"], secret=SECRET)
    slow_retries = FAST.model_copy(
        update={"max_attempts": 5, "backoff_base": 0.5, "backoff_max": 0.5}
    )
    dispatcher = await start_dispatcher(dispatchers, db, bus, slow_retries)

    await bus.publish("email.sent", email_id="e-6")
    await wait_for(lambda: len(receiver.requests) == 1, timeout=10)
    await store.delete(hook["id"])
    dispatcher.subscriptions_changed()
    await bus.publish("email.sent", email_id="e-7")
    await asyncio.sleep(1.5)  # three retry intervals

    assert len(receiver.requests) == 1
    with pytest.raises(Exception, match="no webhook"):
        await store.deliveries(hook["id"])
    assert await store.count_pending() == 0


async def test_two_nodes_on_one_database_post_each_event_once(
    database_url: str, db: Database, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory()
    store = WebhookStore(db)
    hook = await store.create(url=receiver.url, events=["*"], secret=SECRET)
    other_db = Database(database_url)
    await other_db.start()
    buses = [MemoryEventBus(EventBusSettings()) for _ in range(2)]
    try:
        for node_bus in buses:
            await node_bus.start()
        await start_dispatcher(dispatchers, db, buses[0])
        await start_dispatcher(dispatchers, other_db, buses[1])
        # Every node sees every event (as with the Redis bus): the same Event on both buses.
        events = [Event("email.sent", {"n": n}) for n in range(20)]
        for event in events:
            await asyncio.gather(*(node_bus.publish_event(event) for node_bus in buses))
        await wait_for(lambda: len(receiver.requests) >= len(events), timeout=20)
        await wait_for(lambda: settled(store, hook["id"]), timeout=10)
        await asyncio.sleep(0.3)
    finally:
        for dispatcher in dispatchers:
            await dispatcher.stop()
        for node_bus in buses:
            await node_bus.stop()
        await other_db.stop()

    posted = sorted(json.loads(request.body)["id"] for request in receiver.requests)
    assert posted == sorted(event.id for event in events)
    rows, _ = await store.deliveries(hook["id"], limit=100)
    assert len(rows) == len(events)
    assert {row["status"] for row in rows} == {"delivered"}


async def test_stop_is_bounded_and_leaves_the_delivery_pending(
    db: Database, bus: MemoryEventBus, dispatchers: list[WebhookDispatcher],
    receiver_factory: Callable[..., Receiver],
) -> None:
    hanging = receiver_factory(hold=30.0)
    store = WebhookStore(db)
    hook = await store.create(url=hanging.url, events=["*"], secret=SECRET)
    patient = FAST.model_copy(update={"timeout": 60.0})
    dispatcher = await start_dispatcher(dispatchers, db, bus, patient)

    await bus.publish("email.sent", email_id="e-8")
    await wait_for(lambda: len(hanging.requests) == 1, timeout=10)
    started = time.monotonic()
    await dispatcher.stop()
    assert time.monotonic() - started < 8

    delivery = await only_delivery(store, hook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("pending", 0)
    # Given back, not left leased: the next dispatcher posts it at once.
    hanging.release.set()
    hanging.hold = 0.0
    await start_dispatcher(dispatchers, db, bus, patient)
    await wait_for(lambda: settled(store, hook["id"]), timeout=10)
    delivery = await only_delivery(store, hook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)


async def test_deliveries_page_newest_first_with_a_cursor(db: Database) -> None:
    store = WebhookStore(db)
    hook = await store.create(url="http://127.0.0.1:9/x", events=["*"], secret=SECRET)
    events = [Event("email.sent", {"n": n}, time=1000.0 + n) for n in range(5)]
    for event in events:
        assert await store.enqueue(event, [hook["id"]]) == 1
        assert await store.enqueue(event, [hook["id"]]) == 0  # the same event again: ignored
    seen: list[str] = []
    cursor = None
    while True:
        rows, cursor = await store.deliveries(hook["id"], limit=2, cursor=cursor)
        seen.extend(row["event_id"] for row in rows)
        if cursor is None:
            break
    assert sorted(seen) == sorted(event.id for event in events)
    assert len(seen) == len(set(seen))
    created = [row["created_at"] for row in (await store.deliveries(hook["id"]))[0]]
    assert created == sorted(created, reverse=True)


# The API


KEYS = [
    ApiKeySettings(name="app", key="app-key", scopes=["send", "read"]),  # type: ignore[arg-type]
    ApiKeySettings(name="ops", key="ops-key", scopes=["admin"]),  # type: ignore[arg-type]
]


@asynccontextmanager
async def running_node(settings: Settings) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """A node (its webhooks manager on fast retries) and a client of its app."""
    settings.webhooks = FAST
    service = build_service(settings)
    app = create_app(service)
    async with service:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield service, http


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    async with running_node(settings) as running:
        yield running


async def test_subscribe_list_get_deliveries_and_delete(
    node: tuple[Service, httpx.AsyncClient], receiver_factory: Callable[..., Receiver]
) -> None:
    service, client = node
    receiver = receiver_factory()
    answer = await client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "events": ["email.sent", "email.sent"], "description": "CRM"},
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["events"] == ["email.sent"]
    assert len(created["secret"]) >= 40  # generated
    assert created["created_at"].endswith("+00:00")
    hook_id = created["id"]

    listed = (await client.get("/api/v1/webhooks")).json()
    assert listed["next_cursor"] is None
    assert [item["id"] for item in listed["items"]] == [hook_id]
    one = (await client.get(f"/api/v1/webhooks/{hook_id}")).json()
    assert "secret" not in one and "secret" not in listed["items"][0]
    assert one["url"] == receiver.url and one["description"] == "CRM"

    await service.bus.publish("email.sent", email_id="e-9")
    await wait_for(lambda: len(receiver.requests) == 1, timeout=10)
    request = receiver.requests[0]
    assert verify(created["secret"], request.headers["x-email-sender-timestamp"], request.body,
                  request.headers["x-email-sender-signature"])

    async def delivered() -> bool:
        page = (await client.get(f"/api/v1/webhooks/{hook_id}/deliveries")).json()
        return bool(page["items"]) and page["items"][0]["status"] == "delivered"

    await wait_for(delivered, timeout=10)
    page = (await client.get(f"/api/v1/webhooks/{hook_id}/deliveries")).json()
    [delivery] = page["items"]
    assert set(delivery) == {
        "id", "event_id", "event_type", "status", "attempts", "response_code", "last_error",
        "duration_ms", "created_at", "delivered_at", "next_attempt_at",
    }
    assert (delivery["event_type"], delivery["attempts"], delivery["response_code"]) == (
        "email.sent", 1, 200
    )
    assert delivery["delivered_at"].endswith("+00:00")
    status = (await client.get("/api/v1/managers/status")).json()
    webhooks = next(m for m in status["managers"] if m["name"] == "webhooks")
    assert webhooks["state"] == "running"
    assert webhooks["info"]["delivered"] == 1

    assert (await client.delete(f"/api/v1/webhooks/{hook_id}")).status_code == 204
    assert (await client.get(f"/api/v1/webhooks/{hook_id}")).status_code == 404
    assert (await client.get(f"/api/v1/webhooks/{hook_id}/deliveries")).status_code == 404
    assert (await client.delete(f"/api/v1/webhooks/{hook_id}")).status_code == 404
    assert (await client.get("/api/v1/webhooks")).json()["items"] == []


async def test_a_given_secret_is_kept(node: tuple[Service, httpx.AsyncClient]) -> None:
    _, client = node
    answer = await client.post(
        "/api/v1/webhooks", json={"url": "https://example.com/hooks", "events": ["*"],
                                  "secret": SECRET},
    )
    assert answer.status_code == 201
    assert answer.json()["secret"] == SECRET


BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
    ({"url": "http://", "events": ["*"]}, "url"),
    ({"url": "https://example.com:port/x", "events": ["*"]}, "url"),
    ({"url": "https://example.com:99999/x", "events": ["*"]}, "url"),
    ({"url": "https://exa mple.com/x", "events": ["*"]}, "url"),
    ({"url": "https://[::1/x", "events": ["*"]}, "url"),
    ({"url": "https://example.com/" + "a" * 2048, "events": ["*"]}, "url"),
    ({"events": ["*"]}, "url"),
    ({"url": "https://example.com/x", "events": []}, "events"),
    ({"url": "https://example.com/x", "events": ["Email.Sent"]}, "events"),
    ({"url": "https://example.com/x", "events": ["email.*"]}, "events"),
    ({"url": "https://example.com/x", "events": ["email.bounce"]}, "events"),
    ({"url": "https://example.com/x", "events": ["*"], "secret": "too-short"}, "secret"),
    ({"url": "https://example.com/x", "events": ["*"], "active": False}, "active"),
]


async def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    node: tuple[Service, httpx.AsyncClient]
) -> None:
    _, client = node
    for body, named in BAD_INPUT:
        answer = await client.post("/api/v1/webhooks", json=body)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "validation_error"
        problems = error["details"]["problems"]
        assert [problem["field"] for problem in problems] == [named], (body, problems)
    assert (await client.get("/api/v1/webhooks")).json()["items"] == []


async def test_only_admin_keys_manage_webhooks(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, **{"security.api_keys": KEYS})
    async with running_node(settings) as (_, client):
        body = {"url": "https://example.com/x", "events": ["*"]}
        app_key = {"Authorization": "Bearer app-key"}
        assert (await client.post("/api/v1/webhooks", json=body, headers=app_key)).status_code \
            == 403
        assert (await client.get("/api/v1/webhooks", headers=app_key)).status_code == 403
        assert (await client.get("/api/v1/webhooks")).status_code == 401
        ops_key = {"Authorization": "Bearer ops-key"}
        created = await client.post("/api/v1/webhooks", json=body, headers=ops_key)
        assert created.status_code == 201
        listed = await client.get("/api/v1/webhooks", headers=ops_key)
        assert [item["id"] for item in listed.json()["items"]] == [created.json()["id"]]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433:8080/hook",
        "http://127.1/hook",
        "http://0x7f000001/hook",
        "http://0/hook",
        "http://localhost./hook",
    ],
)
async def test_local_and_private_addresses_are_refused_unless_allowed(
    node: tuple[Service, httpx.AsyncClient], url: str
) -> None:
    service, client = node
    service.settings.webhooks.allow_private_networks = False
    answer = await client.post("/api/v1/webhooks", json={"url": url, "events": ["*"]})
    assert answer.status_code == 422, answer.text
    assert "allow_private_networks" in answer.json()["error"]["message"]
    assert (await client.get("/api/v1/webhooks")).json()["items"] == []


async def test_credentials_in_a_webhook_url_are_never_shown(
    node: tuple[Service, httpx.AsyncClient]
) -> None:
    _, client = node
    answer = await client.post("/api/v1/webhooks", json={
        "url": "https://user:hunter2-secret@example.com/hook", "events": ["*"]})
    assert answer.status_code == 201
    listed = (await client.get("/api/v1/webhooks")).text
    assert "hunter2-secret" not in answer.text.replace(answer.json()["secret"], "")
    assert "hunter2-secret" not in listed
