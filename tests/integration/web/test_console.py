"""The console over HTTP against a real node: sign-in, sessions, CSRF, scopes, modes, bad input.

The browser tests (tests/e2e/test_console_browser.py) drive the same pages in Chromium; these
check what a browser cannot show: cookie flags, refusals, and that a refused action changed
nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest

from email_sender.api.app import create_app
from email_sender.service import Service, build_service
from email_sender.settings import ApiKeySettings
from tests.conftest import asgi_client, make_settings, wait_for

KEYS = [
    ApiKeySettings(name="app", key="app-key", scopes=["send"]),  # type: ignore[arg-type]
    ApiKeySettings(name="viewer", key="read-key", scopes=["read"]),  # type: ignore[arg-type]
    ApiKeySettings(name="ops", key="ops-key", scopes=["admin"]),  # type: ignore[arg-type]
]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url, **{
        "security.api_keys": KEYS,
        "embedder.provider": "hashing",
        # The secret first: a URL without one is refused.
        "outreach.unsubscribe_secret": "console-test-unsubscribe-secret",
        "outreach.unsubscribe_url": "https://mail.tour.example/u/",
    })
    service = build_service(settings)
    async with service:
        yield service


@pytest.fixture
async def browser(node: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, as a browser does; it follows no redirect by itself."""
    async with asgi_client(node) as http:
        yield http


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, key: str, next_path: str = "/") -> httpx.Response:
    form = await http.get("/ui/signin", params={"next": next_path})
    assert form.status_code == 200
    return await http.post(
        "/ui/signin", data={"key": key, "csrf": csrf_of(form), "next": next_path}
    )


async def api(
    node: Service, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    async with asgi_client(node) as http:
        return await http.request(
            method, path, headers={"Authorization": "Bearer ops-key", **(headers or {})},
            **kwargs,
        )


async def test_pages_ask_for_a_sign_in_and_a_read_key_opens_them(
    browser: httpx.AsyncClient,
) -> None:
    first = await browser.get("/ui/emails")
    assert first.status_code == 303
    assert first.headers["location"] == "/ui/signin?next=/ui/emails"

    signed = await sign_in(browser, "read-key", "/ui/emails")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/ui/emails"
    cookie = signed.headers["set-cookie"]
    assert "es_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test below

    for path in ("/", "/ui/emails", "/ui/search", "/ui/inbox", "/ui/contacts", "/ui/sequences",
                 "/ui/suppressions", "/ui/backups", "/ui/sink"):
        page = await browser.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert page.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "viewer · read" in page.text
    # A read session sees no admin buttons.
    assert 'action="/ui/mode"' not in (await browser.get("/")).text
    assert (await browser.get("/ui/static/console.js")).status_code == 200


async def test_bad_keys_are_refused_with_a_reason(browser: httpx.AsyncClient) -> None:
    unknown = await sign_in(browser, "not-a-key")
    assert unknown.status_code == 401
    assert "key: no such API key" in unknown.text
    send_only = await sign_in(browser, "app-key")
    assert send_only.status_code == 403
    assert "&#39;read&#39; or &#39;admin&#39; scope" in send_only.text
    assert "es_session" not in send_only.headers.get("set-cookie", "")
    empty = await sign_in(browser, "  ")
    assert empty.status_code == 422
    # A sign-in post without the form's token (another site posting it) is refused.
    forged = await browser.post("/ui/signin", data={"key": "ops-key", "csrf": "guess"})
    assert forged.status_code == 403
    assert "es_session" not in forged.headers.get("set-cookie", "")


async def test_a_tampered_or_foreign_cookie_is_no_session(browser: httpx.AsyncClient) -> None:
    signed = await sign_in(browser, "read-key")
    token = signed.cookies["es_session"]
    payload, signature = token.split(".")
    # Claim the admin scope with the read session's signature.
    import base64
    import json

    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields["scopes"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    browser.cookies.set("es_session", f"{forged}.{signature}")
    assert (await browser.get("/")).status_code == 303


async def test_a_read_session_cannot_switch_the_mode(
    browser: httpx.AsyncClient, node: Service
) -> None:
    await sign_in(browser, "read-key")
    csrf = csrf_of(await browser.get("/ui/inbox"))  # the sign-out form carries it
    refused = await browser.post("/ui/mode", data={"mode": "readonly", "csrf": csrf})
    assert refused.status_code == 403
    assert "&#39;admin&#39; scope" in refused.text
    assert (await node.modes.current()).value == "normal"


async def test_an_admin_switches_to_read_only_and_back_and_each_switch_is_audited(
    browser: httpx.AsyncClient, node: Service
) -> None:
    await sign_in(browser, "ops-key")
    csrf = csrf_of(await browser.get("/"))
    without_token = await browser.post("/ui/mode", data={"mode": "readonly"})
    assert without_token.status_code == 403
    assert (await node.modes.current()).value == "normal"

    switched = await browser.post(
        "/ui/mode", data={"mode": "readonly", "reason": "relay change", "csrf": csrf}
    )
    assert switched.status_code == 303
    assert (await node.modes.current()).value == "read_only"
    overview = await browser.get(switched.headers["location"])
    assert "mode is now read_only" in overview.text
    assert 'class="badge mode-read_only"' in overview.text
    # Writes wait, reads go on, and the switch back works.
    refused = await browser.post(
        "/ui/suppressions", data={"address": "x@example.com", "csrf": csrf}
    )
    assert refused.status_code == 503
    assert (await browser.get("/ui/emails")).status_code == 200
    back = await browser.post("/ui/mode", data={"mode": "normal", "csrf": csrf})
    assert back.status_code == 303
    assert (await node.modes.current()).value == "normal"
    audit = await api(node, "GET", "/api/v1/maintenance")
    assert audit.json()["mode"] == "normal"

    bad = await browser.post("/ui/mode", data={"mode": "off", "csrf": csrf})
    assert bad.status_code == 422
    assert "mode" in bad.text
    assert bad.headers["content-type"].startswith("text/html")


async def test_maintenance_keeps_the_overview_and_closes_the_rest(
    browser: httpx.AsyncClient, node: Service
) -> None:
    await sign_in(browser, "ops-key")
    csrf = csrf_of(await browser.get("/"))
    await browser.post("/ui/mode", data={"mode": "maintenance", "csrf": csrf})
    assert (await browser.get("/")).status_code == 200
    closed = await browser.get("/ui/emails")
    assert closed.status_code == 503
    assert "maintenance mode" in closed.text
    back = await browser.post("/ui/mode", data={"mode": "normal", "csrf": csrf})
    assert back.status_code == 303
    assert (await browser.get("/ui/emails")).status_code == 200


async def test_a_label_is_corrected_in_one_click_and_a_bad_one_changes_nothing(
    browser: httpx.AsyncClient, node: Service
) -> None:
    sent = await api(node, "POST", "/api/v1/emails", json={
        "from": "booking@example.com", "to": ["venue@example.org"],
        "subject": "Concert en mars", "text": "Une date en mars ?",
    })
    email = (await api(node, "GET", f"/api/v1/emails/{sent.json()['id']}")).json()
    reply = EmailMessage()
    reply["From"] = "venue@example.org"
    reply["To"] = "booking@example.com"
    reply["Subject"] = "Re: Concert en mars"
    reply["Message-ID"] = make_msgid(domain="example.org")
    reply["In-Reply-To"] = email["message_id"]
    reply.set_content("Avec plaisir, le 14 mars nous irait.")
    received = await api(node, "POST", "/api/v1/inbound", content=bytes(reply),
                         headers={"Content-Type": "message/rfc822"})
    inbound_id = received.json()["id"]

    await sign_in(browser, "ops-key")
    inbox = await browser.get("/ui/inbox")
    assert f'action="/ui/inbox/{inbound_id}/label"' in inbox.text
    csrf = csrf_of(inbox)

    bad = await browser.post(f"/ui/inbox/{inbound_id}/label",
                             data={"intent": "maybe", "csrf": csrf})
    assert bad.status_code == 422
    assert "intent" in bad.text
    unknown = await browser.post("/ui/inbox/nope/label", data={"intent": "confirmed",
                                                                "csrf": csrf})
    assert unknown.status_code == 404
    assert (await node.inbound.store.get(inbound_id))["label"] is None  # type: ignore[union-attr]

    done = await browser.post(f"/ui/inbox/{inbound_id}/label",
                              data={"intent": "confirmed", "csrf": csrf, "back": "/ui/inbox"})
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/inbox?notice=labelled%20confirmed"
    assert (await node.inbound.store.get(inbound_id))["label"] == "confirmed"  # type: ignore[union-attr]
    # The email's page shows the thread with the answer.
    detail = await browser.get(f"/ui/emails/{email['id']}")
    assert "Avec plaisir, le 14 mars nous irait." in detail.text
    # A redirect elsewhere is not followed: the console only sends back to its own pages.
    away = await browser.post(f"/ui/inbox/{inbound_id}/label",
                              data={"intent": "confirmed", "csrf": csrf,
                                    "back": "https://evil.example/"})
    assert away.headers["location"].startswith("/?notice=")


async def test_suppressions_and_backups_from_the_console(
    browser: httpx.AsyncClient, node: Service
) -> None:
    await sign_in(browser, "ops-key")
    csrf = csrf_of(await browser.get("/ui/suppressions"))
    bad = await browser.post("/ui/suppressions", data={"address": "not an address",
                                                       "csrf": csrf})
    assert bad.status_code == 422
    assert "address" in bad.text
    assert (await api(node, "GET", "/api/v1/suppressions")).json()["items"] == []

    added = await browser.post("/ui/suppressions", data={"address": "gone@example.org",
                                                         "csrf": csrf})
    assert added.status_code == 303
    listed = await browser.get("/ui/suppressions")
    assert "gone@example.org" in listed.text
    removed = await browser.post("/ui/suppressions/remove",
                                 data={"address": "gone@example.org", "csrf": csrf})
    assert removed.status_code == 303
    assert (await api(node, "GET", "/api/v1/suppressions")).json()["items"] == []

    created = await browser.post("/ui/backups", data={"csrf": csrf})
    assert created.status_code == 303
    names = [row["name"] for row in (await api(node, "GET", "/api/v1/backups")).json()["items"]]
    assert len(names) == 1
    verified = await browser.post(f"/ui/backups/{names[0]}/verify", data={"csrf": csrf})
    assert verified.status_code == 200
    assert f"{names[0]}: verified" in verified.text
    missing = await browser.post("/ui/backups/nope/verify", data={"csrf": csrf})
    assert missing.status_code == 404


async def test_bad_filters_and_unknown_ids_answer_pages_not_json(
    browser: httpx.AsyncClient,
) -> None:
    await sign_in(browser, "read-key")
    for path, status in (("/ui/emails/nope", 404), ("/ui/search?limit=0&q=x", 422),
                         ("/ui/search?mode=fuzzy&q=x", 422), ("/ui/emails?status=NOT", 422),
                         ("/ui/sequences/nope", 404), ("/ui/nowhere", 404)):
        page = await browser.get(path)
        assert page.status_code == status, (path, page.text[:300])
        assert page.headers["content-type"].startswith("text/html"), path
    # The JSON API keeps its JSON errors.
    assert (await browser.get("/api/v1/emails/nope")).headers["content-type"].startswith(
        "application/json"
    )


async def test_the_overview_refreshes_as_mail_goes_out(
    browser: httpx.AsyncClient, node: Service
) -> None:
    await sign_in(browser, "read-key")
    sent = await api(node, "POST", "/api/v1/emails", json={
        "from": "booking@example.com", "to": ["venue@example.org"], "subject": "Hello",
        "text": "A date in March?",
    })
    email_id = sent.json()["id"]

    async def shown_sent() -> bool:
        live = await browser.get(f"/ui/emails/{email_id}", headers={"X-Live": "1"})
        return 'id="email-status">sent<' in live.text

    await wait_for(shown_sent, timeout=30)
    live = await browser.get("/", headers={"X-Live": "1"})
    assert "<html" not in live.text  # only the part that is refreshed
    assert 'data-status="sent">1<' in live.text


async def test_without_keys_no_sign_in_is_asked_and_forms_still_need_the_token(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, None, **{"embedder.provider": "hashing"})
    async with build_service(settings) as node, asgi_client(node) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "local · admin" in page.text
        assert "HttpOnly" in page.headers["set-cookie"]
        assert (await http.post("/ui/mode", data={"mode": "readonly"})).status_code == 403
        assert (await node.modes.current()).value == "normal"
        done = await http.post("/ui/mode", data={"mode": "readonly", "csrf": csrf_of(page)})
        assert done.status_code == 303
        assert (await node.modes.current()).value == "read_only"
        assert (await http.get("/ui/signin")).status_code == 303


async def test_behind_tls_the_cookie_is_secure(node: Service) -> None:
    transport = httpx.ASGITransport(app=create_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="https://console.example") as http:
        signed = await sign_in(http, "read-key")
        assert "Secure" in signed.headers["set-cookie"]


async def test_the_board_and_a_sequence_show_their_contacts_and_figures(
    browser: httpx.AsyncClient, node: Service
) -> None:
    made = []
    for index, city in enumerate(("Brest", "Quimper", "Lorient")):
        answer = await api(node, "POST", "/api/v1/contacts", json={
            "email": f"venue{index}@example.org", "name": f"Salle {city}", "city": city,
        })
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["id"])
    moved = await api(node, "PATCH", f"/api/v1/contacts/{made[2]}",
                      json={"status": "declined", "reason": "no more concerts"})
    assert moved.status_code == 200, moved.text
    created = await api(node, "POST", "/api/v1/sequences", json={
        "name": "Tournée de mars", "sender": "booking@example.com",
        "steps": [{"subject": "Une date en mars ?", "text": "Bonjour"},
                  {"delay": "J+3", "text": "Je me permets de vous relancer"}],
    })
    assert created.status_code == 201, created.text
    sequence = created.json()
    enrolled = await api(node, "POST", f"/api/v1/sequences/{sequence['id']}/enrol",
                         json={"contact_ids": made[:2]})
    assert enrolled.status_code == 200, enrolled.text

    await sign_in(browser, "read-key")
    board = await browser.get("/ui/contacts")
    assert board.status_code == 200
    columns = re.findall(r'<section class="column" aria-labelledby="col-(\w+)">(.*?)</section>',
                         board.text, re.S)
    placed = {name: re.findall(r"<strong>Salle (\w+)</strong>", body) for name, body in columns}
    assert placed["declined"] == ["Lorient"]
    assert sorted(placed["new"] + placed["contacted"]) == ["Brest", "Quimper"]
    found = await browser.get("/ui/contacts", params={"q": "Brest"})
    assert "Salle Brest" in found.text and "Salle Quimper" not in found.text

    listed = await browser.get("/ui/sequences")
    assert "Tournée de mars" in listed.text
    detail = await browser.get(f"/ui/sequences/{sequence['id']}")
    assert detail.status_code == 200
    assert "Une date en mars ?" in detail.text
    assert "2 enrolled" in detail.text
