"""Faults between the service and its real dependencies, injected by the TCP fault proxy.

Each case records a row of the fault table (case, expected, observed), printed at the end of
the module (``pytest -s``):

* relay drops after DATA, before its 250: the email is deferred, retried and sent; the relay
  holds at most one extra copy per drop (the duplicate an SMTP client cannot rule out).
* relay takes the message but never answers DATA: the send times out after ``timeout``
  (relay setting), the email is deferred and sent again: one extra copy, not more.
* relay hangs: the send times out after ``timeout`` (relay setting) and the email is deferred,
  not stuck in ``sending``; once the relay answers again it is sent exactly once.
* PostgreSQL unreachable during accept (refused, then hanging): ``POST /api/v1/emails`` answers
  503 with a JSON ``{"error": {...}}`` within a bound, nothing is half-written, and accepting
  works again once the database is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from email_sender.db.engine import POSTGRES_COMMAND_TIMEOUT, POSTGRES_CONNECT_TIMEOUT
from email_sender.metrics import REGISTRY
from email_sender.service import Service, build_service
from email_sender.settings import RelaySettings
from tests.conftest import asgi_client, make_settings, wait_for
from tests.support.faultproxy import FaultProxy
from tests.support.smtp_server import SmtpTestServer

END_OF_DATA = b"\r\n.\r\n"
FAST_RETRIES = {
    "delivery.backoff.base": 0.2,
    "delivery.backoff.max": 0.5,
    "delivery.backoff.jitter": 0.0,
    "delivery.poll_interval": 0.05,
}

FAULT_TABLE: list[tuple[str, str, str]] = []


def uncertain_sends() -> float:
    """Sends the service itself counted as possibly duplicated (cut after the data went out)."""
    return REGISTRY.get_sample_value("email_sender_delivery_uncertain_total") or 0.0


@pytest.fixture(scope="module", autouse=True)
def _print_fault_table() -> Iterator[None]:
    yield
    if FAULT_TABLE:
        width = max(len(case) for case, _, _ in FAULT_TABLE)
        print("\nfault case table")
        for case, expected, observed in FAULT_TABLE:
            print(f"  {case:<{width}} | expected: {expected} | observed: {observed}")


def email(n: int = 0) -> dict[str, Any]:
    return {"from": "ops@example.com", "to": [f"guest{n}@example.org"],
            "subject": f"Fault {n}", "text": f"Message number {n}."}


@pytest.fixture
def relay_proxy(smtp_server: SmtpTestServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", smtp_server.port) as proxy:
        yield proxy


@pytest.fixture
async def relay_node(
    tmp_path: Path, database_url: str, relay_proxy: FaultProxy
) -> AsyncIterator[Service]:
    relay = RelaySettings(url=f"smtp://{relay_proxy.address}", tls="none", timeout=1.5,
                          max_connections=2)
    settings = make_settings(tmp_path, database_url, **FAST_RETRIES, **{"smtp.relays": [relay]})
    async with build_service(settings) as node:
        yield node


async def detail(api: httpx.AsyncClient, email_id: str) -> dict[str, Any]:
    answer = await api.get(f"/api/v1/emails/{email_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def accept(api: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    batch = {"emails": [email(n) for n in range(count)]}
    answer = await api.post("/api/v1/emails/batch", json=batch)
    assert answer.status_code == 202, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def all_sent(api: httpx.AsyncClient, ids: list[str]) -> bool:
    return all([(await detail(api, email_id))["status"] == "sent" for email_id in ids])


async def test_relay_drop_after_data_is_retried_and_the_duplicate_is_bounded(
    relay_node: Service, relay_proxy: FaultProxy, smtp_server: SmtpTestServer
) -> None:
    drops = 3
    counted_before = uncertain_sends()
    relay_proxy.cut(after_pattern=END_OF_DATA, times=drops)
    async with asgi_client(relay_node) as api:
        items = await accept(api, 5)
        ids = [item["id"] for item in items]
        await wait_for(lambda: all_sent(api, ids), timeout=60)
        details = [await detail(api, email_id) for email_id in ids]

    cuts = relay_proxy.stats().cuts
    assert cuts == drops
    copies = smtp_server.accepted_ids()
    assert sorted(copies) == sorted(item["message_id"] for item in items)  # none lost
    extra = sum(copies.values()) - len(items)
    # Every drop came after the relay had the whole message: it kept it and answered 250 into
    # the void, so each drop costs exactly one extra copy, and nothing more.
    assert extra == cuts, copies
    assert max(copies.values()) <= 1 + drops
    deferred = [a for d in details for a in d["attempts"] if a["outcome"] == "deferred"]
    assert len(deferred) == drops  # every drop was recorded as a deferred attempt
    assert all(a["outcome"] == "sent" for d in details for a in d["attempts"][-1:])
    counted = uncertain_sends() - counted_before
    assert counted == extra  # the service counted every possible duplicate, and only those
    FAULT_TABLE.append((
        f"relay drops after DATA ({relay_node.db.dialect})",
        "deferred, retried, sent; <= 1 extra copy per drop",
        f"{drops} drops -> {len(deferred)} deferred attempts, 5/5 sent, "
        f"{sum(copies.values())} copies at relay ({extra} extra, max {max(copies.values())}/email)"
        f"; counted uncertain by the service: {counted:.0f}",
    ))


async def test_relay_that_never_answers_data_times_out_and_the_duplicate_is_bounded(
    relay_node: Service, relay_proxy: FaultProxy, smtp_server: SmtpTestServer
) -> None:
    # The relay takes the whole message (and queues it), but its 250 never comes back.
    counted_before = uncertain_sends()
    relay_proxy.hang(after_pattern=END_OF_DATA, times=1)
    timeout = relay_node.settings.smtp.relays[0].timeout
    async with asgi_client(relay_node) as api:
        [item] = await accept(api, 1)
        await wait_for(lambda: all_sent(api, [item["id"]]), timeout=60)
        final = await detail(api, item["id"])
    outcomes = [attempt["outcome"] for attempt in final["attempts"]]
    assert outcomes == ["deferred", "sent"], final["attempts"]
    first = final["attempts"][0]
    assert timeout * 1000 * 0.9 <= first["duration_ms"] < timeout * 1000 * 4
    assert relay_proxy.stats().freezes == 1
    copies = smtp_server.accepted_count(item["message_id"])
    assert copies == 2  # one unanswered transaction, one extra copy; not more
    counted = uncertain_sends() - counted_before
    assert counted == 1
    FAULT_TABLE.append((
        f"relay never answers DATA ({relay_node.db.dialect})",
        f"times out after {timeout} s, deferred, sent; <= 1 extra copy",
        f"attempts {outcomes}, first {first['duration_ms'] / 1000:.2f} s "
        f"({first['response'] or final['last_error']!r}); {copies} copies at relay; "
        f"counted uncertain: {counted:.0f}",
    ))


async def test_relay_hang_times_out_and_defers(
    relay_node: Service, relay_proxy: FaultProxy, smtp_server: SmtpTestServer
) -> None:
    counted_before = uncertain_sends()
    relay_proxy.hang()
    timeout = relay_node.settings.smtp.relays[0].timeout
    async with asgi_client(relay_node) as api:
        started = time.monotonic()
        [item] = await accept(api, 1)

        async def deferred_once() -> bool:
            attempts = (await detail(api, item["id"]))["attempts"]
            return any(a["outcome"] == "deferred" for a in attempts)

        await wait_for(deferred_once, timeout=timeout * 10 + 20)
        deferred_after = time.monotonic() - started
        first = (await detail(api, item["id"]))["attempts"][0]
        assert first["outcome"] == "deferred"
        # Timed out by the relay setting, not by some larger default.
        assert first["duration_ms"] >= timeout * 1000 * 0.9
        assert first["duration_ms"] < timeout * 1000 * 4
        assert smtp_server.accepted_count(item["message_id"]) == 0
        last_error = (await detail(api, item["id"]))["last_error"]
        relay_proxy.pass_through()
        await wait_for(lambda: all_sent(api, [item["id"]]), timeout=60)
        final = await detail(api, item["id"])
    assert smtp_server.accepted_count(item["message_id"]) == 1
    assert uncertain_sends() == counted_before  # nothing went out: no possible duplicate
    FAULT_TABLE.append((
        f"relay hangs ({relay_node.db.dialect})",
        f"send times out after {timeout} s, deferred, then sent once",
        f"first attempt deferred after {first['duration_ms'] / 1000:.2f} s "
        f"({deferred_after:.1f} s after accept), error {last_error!r}; "
        f"sent after {len(final['attempts'])} attempts, 1 copy",
    ))


# --- PostgreSQL unreachable during accept ----------------------------------------------------

# Seconds an accept may take to answer while the database is down: at once when it refuses;
# when it hangs, a pooled connection's ping fails after the command timeout and a new
# connection after the connect timeout.
ACCEPT_BOUND = {
    "refuse": 10.0,
    "hang": 2 * POSTGRES_COMMAND_TIMEOUT + POSTGRES_CONNECT_TIMEOUT + 10.0,
}


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[FaultProxy]:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
async def pg_node(tmp_path: Path, pg_url: str, pg_proxy: FaultProxy) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, pg_proxy.route(pg_url))
    async with build_service(settings, role="api") as node:
        yield node


async def rows_in(pg_url: str) -> dict[str, int]:
    """Row counts read straight from PostgreSQL, around the proxy."""
    connection = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"),
                                       timeout=10)
    try:
        counts = {}
        for table in ("emails", "attempts", "audit_log"):
            exists = await connection.fetchval("SELECT to_regclass($1)", table)
            if exists:
                counts[table] = await connection.fetchval(f'SELECT count(*) FROM "{table}"')
        return counts
    finally:
        await connection.close()


async def post_timed(
    api: httpx.AsyncClient, body: dict[str, Any], bound: float = 30.0
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    async with asyncio.timeout(bound):
        answer = await api.post("/api/v1/emails", json=body)
    return answer, time.monotonic() - started


@pytest.mark.postgres
@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", ["refuse", "hang"])
async def test_postgres_down_during_accept_answers_503_and_recovers(
    pg_node: Service, pg_proxy: FaultProxy, pg_url: str, fault: str
) -> None:
    async with asgi_client(pg_node) as api:
        first, _ = await post_timed(api, email(0))
        assert first.status_code == 202, first.text
        before = await rows_in(pg_url)

        if fault == "refuse":
            pg_proxy.refuse(drop_existing=True)
        else:
            pg_proxy.hang()
        bound = ACCEPT_BOUND[fault]
        # Two in a row: the second must not find a half-dead pool that hangs for longer.
        answers = [await post_timed(api, email(n), bound + 10) for n in (1, 2)]
        for answer, elapsed in answers:
            assert answer.status_code == 503, answer.text
            error = answer.json()["error"]
            assert error["code"] == "database_unavailable"
            assert "database" in error["message"]
            assert elapsed < bound
        pg_proxy.pass_through()
        after_outage = await rows_in(pg_url)
        assert after_outage == before  # nothing half-written: emails, attempts, audit
        assert set(before) == {"emails", "attempts", "audit_log"}

        async def accepts_again() -> bool:
            answer, _ = await post_timed(api, email(3))
            return answer.status_code == 202

        await wait_for(accepts_again, timeout=30, interval=0.5)
        recovered = await rows_in(pg_url)
    assert recovered["emails"] == before["emails"] + 1
    FAULT_TABLE.append((
        f"PostgreSQL {fault} during accept",
        f"503 {{'error': ...}} within {ACCEPT_BOUND[fault]:.0f} s, nothing written, recovers",
        f"{[a.status_code for a, _ in answers]} {answers[0][0].json()['error']['code']} in "
        f"{max(e for _, e in answers):.2f} s max; rows {before['emails']} -> "
        f"{after_outage['emails']} during outage; 202 again, rows {recovered['emails']}",
    ))
