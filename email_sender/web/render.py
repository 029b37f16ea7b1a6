"""Pages from Jinja2 templates, with the headers every console answer carries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from email_sender import __version__
from email_sender.web.auth import set_session_cookie

HERE = Path(__file__).parent
STATIC = HERE / "static"

# Same-origin scripts and styles only: nothing comes from elsewhere, nothing frames the console.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

NAVIGATION = [
    ("overview", "/", "Overview"),
    ("emails", "/ui/emails", "Emails"),
    ("search", "/ui/search", "Search"),
    ("inbox", "/ui/inbox", "Inbox"),
    ("contacts", "/ui/contacts", "Contacts"),
    ("sequences", "/ui/sequences", "Sequences"),
    ("suppressions", "/ui/suppressions", "Suppressions"),
    ("backups", "/ui/backups", "Backups"),
    ("sink", "/ui/sink", "Captured mail"),
]


def _when(value: str | float | None) -> str:
    """An ISO time or an epoch as ``2026-12-05 03:40:12 UTC``."""
    if value in (None, ""):
        return "—"
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value).astimezone()
    else:
        moment = datetime.fromisoformat(str(value))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = _when
environment.filters["duration"] = _duration
environment.globals["navigation"] = NAVIGATION
environment.globals["version"] = __version__


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    partial: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered; only its ``partial`` when the page's script refreshes it live."""
    if partial is not None and request.headers.get("x-live") == "1":
        template = partial
    session = getattr(request.state, "console_session", None)
    html = environment.get_template(template).render(
        request=request,
        session=session,
        csrf=session.csrf if session else "",
        can_admin=bool(session and session.principal.allows("admin")),
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    token = getattr(request.state, "new_session_token", None)
    if token:
        set_session_cookie(request, response, token)
    return response


def redirect(request: Request, location: str, *, notice: str | None = None) -> RedirectResponse:
    """Post, redirect, get: the page after an action says what it did."""
    if notice:
        separator = "&" if "?" in location else "?"
        location = f"{location}{separator}notice={quote(notice)}"
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)
