"""One-click unsubscribe from a real HTTP client against a served node (SQLite and PostgreSQL):
the POST acts at once, suppresses, moves the contact, is audited, and nothing else passes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from email_sender.api.server import ApiServer
from email_sender.db import audit
from email_sender.outreach.unsubscribe import list_unsubscribe_headers, make_token
from email_sender.service import Service, build_service
from tests.conftest import make_settings, wait_for

SECRET = "an-unsubscribe-secret-for-tests"
ADDRESS = "programmation@venue.example"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Service, str]]:
    settings = make_settings(tmp_path, database_url)
    settings.outreach.unsubscribe_secret = SECRET  # type: ignore[assignment]
    service = build_service(settings)
    server = ApiServer(service)
    service.add(server)
    async with service:
        yield service, f"http://127.0.0.1:{server.port('api')}"


async def contacted(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    created = await http.post(f"{base}/api/v1/contacts", json={"email": ADDRESS,
                                                                "status": "contacted"})
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_one_click_unsubscribes_at_once_and_for_good(node: tuple[Service, str]) -> None:
    service, base = node
    async with httpx.AsyncClient(timeout=10) as http:
        contact = await contacted(http, base)
        link = f"{base}/u/{make_token(ADDRESS, SECRET.encode())}"

        page = await http.get(link)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in page.text and ADDRESS in page.text
        assert (await http.get(f"{base}/api/v1/suppressions")).json()["items"] == []  # GET: no act

        # What a mail client sends from its own button (RFC 8058).
        answer = await http.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200, answer.text
        assert "ne recevra plus" in answer.text

        listed = (await http.get(f"{base}/api/v1/suppressions")).json()["items"]
        assert [(row["address"], row["reason"]) for row in listed] == [(ADDRESS, "unsubscribe")]
        moved = (await http.get(f"{base}/api/v1/contacts/{contact['id']}")).json()
        assert moved["status"] == "unsubscribed"
        history = (await http.get(f"{base}/api/v1/contacts/{contact['id']}/history")).json()
        assert (history["items"][-1]["from"], history["items"][-1]["source"]) == (
            "contacted", "unsubscribe")

        # A retried POST changes nothing more; the page now says it is done.
        again = await http.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert again.status_code == 200
        assert len((await http.get(f"{base}/api/v1/contacts/{contact['id']}/history")).json()[
            "items"]) == len(history["items"])
        assert "ne recevra plus" in (await http.get(link)).text
        actions = [row["action"] for row in await audit.recent(service.db)]
        assert actions.count("unsubscribed") == 1

        # And no mail goes to the address any more.
        sent = await http.post(f"{base}/api/v1/emails", json={
            "from": "booking@tour.example", "to": [ADDRESS], "subject": "Relance", "text": "?"})
        email_id = sent.json()["id"]

        async def settled() -> bool:
            status = (await http.get(f"{base}/api/v1/emails/{email_id}")).json()["status"]
            return bool(status == "suppressed")

        await wait_for(settled, timeout=30)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        make_token(ADDRESS, b"not-the-secret"),
        # The payload of one address with the signature of another.
        make_token("someone@else.example", SECRET.encode()).split(".")[0]
        + "." + make_token(ADDRESS, SECRET.encode()).split(".")[1],
    ],
)
async def test_a_link_this_service_did_not_sign_changes_nothing(
    node: tuple[Service, str], token: str
) -> None:
    _, base = node
    async with httpx.AsyncClient(timeout=10) as http:
        contact = await contacted(http, base)
        for method in ("GET", "POST"):
            answer = await http.request(method, f"{base}/u/{token}", content=b"",
                                        headers=ONE_CLICK)
            assert answer.status_code == 404, answer.text
            assert "not valid" in answer.json()["error"]["message"]
        assert (await http.get(f"{base}/api/v1/suppressions")).json()["items"] == []
        current = (await http.get(f"{base}/api/v1/contacts/{contact['id']}")).json()
        assert current["status"] == "contacted"


async def test_an_address_that_is_no_contact_is_suppressed_all_the_same(
    node: tuple[Service, str],
) -> None:
    _, base = node
    async with httpx.AsyncClient(timeout=10) as http:
        link = f"{base}/u/{make_token('stranger@example.org', SECRET.encode())}"
        assert (await http.post(link, headers=ONE_CLICK)).status_code == 200
        listed = (await http.get(f"{base}/api/v1/suppressions")).json()["items"]
        assert [row["address"] for row in listed] == ["stranger@example.org"]


async def test_without_a_secret_there_are_no_links(tmp_path: Path, database_url: str) -> None:
    service = build_service(make_settings(tmp_path, database_url))
    server = ApiServer(service)
    service.add(server)
    async with service, httpx.AsyncClient(timeout=10) as http:
        token = make_token(ADDRESS, SECRET.encode())
        answer = await http.post(f"http://127.0.0.1:{server.port('api')}/u/{token}",
                                 headers=ONE_CLICK)
        assert answer.status_code == 404
        assert "not configured" in answer.json()["error"]["message"]


def test_the_headers_point_at_the_served_link() -> None:
    headers = list_unsubscribe_headers(ADDRESS, base_url="https://mail.example.org/u",
                                       secret=SECRET.encode())
    assert headers["List-Unsubscribe"].startswith("<https://mail.example.org/u/")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
