"""The console in a real browser: Debian's Chromium driven by Playwright against a served node.

An operator signs in, sends an email through the API and watches it go out, searches, switches
the service to read-only and back, corrects a reply's label, and every view is saved as a
screenshot under the test's temp dir (``screenshots/``), at laptop and phone sizes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import free_port, service_absent
from tests.e2e.test_serve import CLI, serve_env, wait_until_up

CHROMIUM = Path("/usr/bin/chromium")
# As root in a container, without a sandbox; nothing reaches out to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWS = {
    "overview": "/", "emails": "/ui/emails", "search": "/ui/search?q=concert",
    "inbox": "/ui/inbox", "contacts": "/ui/contacts", "sequences": "/ui/sequences",
    "suppressions": "/ui/suppressions", "backups": "/ui/backups", "sink": "/ui/sink",
}
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"security": {"api_keys": [
        {"name": "app", "key": "app-key", "scopes": ["send"]},
        {"name": "ops", "key": "ops-key", "scopes": ["admin"]},
    ]}}))
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [*CLI, "serve", "--config", str(config), "--data-dir", str(tmp_path / "data"),
         "--port", str(port), "--metrics-port", str(free_port())],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=serve_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing = FileNotFoundError(f"no {CHROMIUM}: apt-get install chromium")
        service_absent("Debian's chromium", missing)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield launched
        finally:
            launched.close()


def api(url: str, method: str, path: str, key: str = "app-key", **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=15, **kwargs)


def reply_to(email: dict[str, Any], text: str) -> bytes:
    message = EmailMessage()
    message["From"] = "La Cigale <venue@lacigale.example>"
    message["To"] = email["from"]
    message["Subject"] = "Re: " + email["subject"]
    message["Message-ID"] = make_msgid(domain="lacigale.example")
    message["In-Reply-To"] = email["message_id"]
    message.set_content(text)
    return bytes(message)


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/ui/signin?next=/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def open_page(browser: Browser, viewport: dict[str, int]) -> Page:
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(20_000)
    return page


def search_until_found(page: Page, url: str, query: str, subject: str) -> None:
    """Indexing runs beside delivery: the email is searchable within seconds, not at once."""
    deadline = time.monotonic() + 60
    while True:
        page.goto(f"{url}/ui/search?q={query}")
        if page.locator("#results").get_by_text(subject).count():
            return
        assert time.monotonic() < deadline, f"{subject!r} not found by {query!r} in 60 s"
        time.sleep(0.5)


def test_an_operator_drives_the_console(node: str, browser: Browser, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = open_page(browser, LAPTOP)
    page.goto(f"{node}/ui/signin")
    page.screenshot(path=shots / "signin.png", full_page=True)
    sign_in(page, node, "ops-key")

    # Sent through the API, seen going out without reloading the page.
    page.goto(f"{node}/ui/emails")
    accepted = api(node, "POST", "/api/v1/emails", json={
        "from": "booking@example.com", "to": ["venue@lacigale.example"],
        "subject": "Concert à Quimperlé en mars", "text": "Bonjour, auriez-vous une date en mars ?",
    })
    assert accepted.status_code == 202, accepted.text
    email_id = accepted.json()["id"]
    row = page.locator(f'tr[data-email-id="{email_id}"]')
    expect(row.locator(".badge")).to_have_text("sent", timeout=30_000)
    row.get_by_role("link").click()
    expect(page.locator("#email-status")).to_have_text("sent")
    expect(page.locator("#attempts")).to_contain_text("sent")
    page.screenshot(path=shots / "email.png", full_page=True)

    # Searched by a word typed without its accent.
    search_until_found(page, node, "quimperle", "Concert à Quimperlé en mars")
    expect(page.locator("#results .score").first).to_be_visible()

    # Read-only and back, by the overview's buttons.
    page.goto(f"{node}/")
    page.get_by_label("Reason for a mode switch").fill("relay change")
    page.get_by_role("button", name="Read-only").click()
    expect(page.locator("#mode")).to_have_text("read_only")
    refused = api(node, "POST", "/api/v1/emails", json={
        "from": "booking@example.com", "to": ["x@example.org"], "subject": "x", "text": "x",
    })
    assert refused.status_code == 503
    page.get_by_role("button", name="Normal").click()
    expect(page.locator("#mode")).to_have_text("normal")

    # A reply comes back; its label is corrected in one click.
    email = api(node, "GET", f"/api/v1/emails/{email_id}", key="ops-key").json()
    received = api(node, "POST", "/api/v1/inbound", content=reply_to(
        email, "Merci, mais nous ne programmons plus de concerts cette saison."
    ), headers={"Content-Type": "message/rfc822"})
    assert received.status_code == 201, received.text
    inbound_id = received.json()["id"]
    page.goto(f"{node}/ui/inbox")
    message = page.locator(f'tr[data-inbound-id="{inbound_id}"]')
    message.get_by_role("button", name="negotiating").click()
    expect(page.get_by_role("status")).to_have_text("labelled negotiating")
    expect(message.locator(".intent")).to_have_text("negotiating")
    labelled = api(node, "GET", f"/api/v1/inbound/{inbound_id}", key="ops-key").json()
    assert labelled["label"] == "negotiating"

    # Every view, on a laptop and on a phone; the thread shows the answer.
    page.goto(f"{node}/ui/emails/{email_id}")
    expect(page.locator("#thread")).to_contain_text("nous ne programmons plus")
    phone = open_page(browser, PHONE)
    sign_in(phone, node, "ops-key")
    for name, path in VIEWS.items():
        for size, viewer in (("laptop", page), ("phone", phone)):
            viewer.goto(f"{node}{path}")
            expect(viewer.get_by_role("heading", level=1)).to_be_visible()
            viewer.screenshot(path=shots / f"{name}-{size}.png", full_page=True)
    taken = sorted(shot.name for shot in shots.iterdir() if shot.stat().st_size > 1000)
    assert len(taken) == 2 * len(VIEWS) + 2, taken
    print(f"screenshots in {shots}: {', '.join(taken)}")


LABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter((field) => !(field.labels && field.labels.length) && !field.getAttribute('aria-label'))
    .map((field) => field.name || field.id)"""

CONTRAST = """() => {
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const ground = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const colour = rgb(getComputedStyle(node).backgroundColor);
      if (colour.length < 4 || colour[3] > 0) return colour;
    }
    return [255, 255, 255];
  };
  const poor = [];
  const texts = 'h1, h2, p, td, th, a, button, label, .badge, .meta, dt';
  for (const element of document.querySelectorAll(texts)) {
    if (!element.textContent.trim() || !element.offsetParent) continue;
    const a = lum(rgb(getComputedStyle(element).color)), b = lum(ground(element));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) poor.push(`${element.tagName}.${element.className}: ${ratio.toFixed(2)}`);
  }
  return poor;
}"""


def test_every_view_is_labelled_keyboard_first_and_readable(node: str, browser: Browser) -> None:
    api(node, "POST", "/api/v1/emails", json={
        "from": "booking@example.com", "to": ["venue@example.org"], "subject": "Hello",
        "text": "A date in March?",
    })
    page = open_page(browser, LAPTOP)
    sign_in(page, node, "ops-key")
    for name, path in VIEWS.items():
        page.goto(f"{node}{path}")
        assert page.evaluate(LABELLED) == [], f"{name}: fields without a label"
        assert page.evaluate(CONTRAST) == [], f"{name}: text under a 4.5:1 contrast"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content", name
    # The sign-in form works from the keyboard alone.
    page.context.clear_cookies()
    page.goto(f"{node}/ui/signin")
    page.keyboard.type("ops-key")  # the key field has the focus
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
