"""What the console changes: sign-in and out, the mode, labels, suppressions, backups.

Every action is a form post carrying the session's CSRF token, refused as the API would refuse
it (scope, mode, bad input), and answered by a redirect to the page that shows the result.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from email_sender.api.routes import backups, inbound, maintenance, suppressions
from email_sender.api.security import KeyRing
from email_sender.modes import Mode
from email_sender.web.auth import (
    AdminForm,
    FormSession,
    secure_cookies,
    set_session_cookie,
    signer_of,
)
from email_sender.web.pages import bad_input, guard, service_of
from email_sender.web.render import page, redirect
from email_sender.web.session import COOKIE, SIGNIN_COOKIE, SIGNIN_TTL

router = APIRouter(include_in_schema=False)

MODES = {"normal": Mode.NORMAL, "readonly": Mode.READ_ONLY, "maintenance": Mode.MAINTENANCE}


def _safe_next(next_path: str | None) -> str:
    """Only a path of this console: never an address elsewhere (open redirect)."""
    if next_path and (next_path == "/" or next_path.startswith("/ui/")):
        return next_path
    return "/"


def _signin_page(request: Request, *, status: int = 200, error: str | None = None,
                 next_path: str = "/") -> HTMLResponse:
    token, nonce = signer_of(request).signin_token()
    response = page(request, "signin.html", status=status, error=error, signin_csrf=nonce,
                    next_path=next_path)
    response.set_cookie(SIGNIN_COOKIE, token, max_age=int(SIGNIN_TTL), path="/ui/signin",
                        httponly=True, samesite="strict", secure=secure_cookies(request))
    return response


@router.get("/ui/signin", response_class=HTMLResponse)
async def signin_form(
    request: Request, next: Annotated[str | None, Query(max_length=512)] = None
) -> Any:
    keys: KeyRing = request.app.state.keys
    if not keys.enabled:
        return redirect(request, "/")
    return _signin_page(request, next_path=_safe_next(next))


@router.post("/ui/signin", response_class=HTMLResponse)
async def signin(
    request: Request,
    key: Annotated[str, Form(max_length=512)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Any:
    """Exchange an API key of scope read or admin for a session cookie."""
    keys: KeyRing = request.app.state.keys
    if not keys.enabled:
        return redirect(request, "/")
    nonce = signer_of(request).signin_nonce(request.cookies.get(SIGNIN_COOKIE))
    if nonce is None or not hmac.compare_digest(nonce, csrf):
        return _signin_page(request, status=403, next_path=_safe_next(next),
                            error="the sign-in form expired: try again")
    if not key.strip():
        return _signin_page(request, status=422, next_path=_safe_next(next),
                            error="key: give the API key")
    principal = keys.authenticate(key.strip())
    if principal is None:
        return _signin_page(request, status=401, next_path=_safe_next(next),
                            error="key: no such API key")
    if not principal.allows("read"):
        return _signin_page(request, status=403, next_path=_safe_next(next),
                            error="key: the console needs a key with the 'read' or 'admin' scope")
    token, _ = signer_of(request).issue(principal)
    response = redirect(request, _safe_next(next))
    set_session_cookie(request, response, token)
    response.delete_cookie(SIGNIN_COOKIE, path="/ui/signin")
    return response


@router.post("/ui/signout")
async def signout(request: Request, session: FormSession) -> Response:
    response = redirect(request, "/ui/signin")
    response.delete_cookie(COOKIE, path="/")
    return response


@router.post("/ui/mode")
async def change_mode(
    request: Request,
    session: AdminForm,
    mode: Annotated[Literal["normal", "readonly", "maintenance"], Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Switch to normal, read-only or maintenance mode; audited like the API's switch."""
    service = service_of(request)
    change = maintenance.ModeChange(reason=reason or "from the console")
    await maintenance.set_mode(service, session.principal, request, MODES[mode], change)
    return redirect(request, "/", notice=f"mode is now {MODES[mode].value}")


@router.post("/ui/inbox/{inbound_id}/label")
async def label(
    inbound_id: str,
    request: Request,
    session: AdminForm,
    intent: Annotated[str, Form(max_length=32)],
    back: Annotated[str, Form(max_length=512)] = "/ui/inbox",
) -> Response:
    """Correct a reply's intent; the classifier learns it."""
    service = await guard(request, "POST", f"/api/v1/inbound/{inbound_id}/label")
    try:
        body = inbound.LabelIn(intent=intent)
    except pydantic.ValidationError as exc:
        raise bad_input(exc) from exc
    await inbound.label(inbound_id, body, request, service, session.principal)
    return redirect(request, _safe_next(back), notice=f"labelled {intent}")


@router.post("/ui/suppressions")
async def suppress(
    request: Request,
    session: AdminForm,
    address: Annotated[str, Form(max_length=320)],
    detail: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    service = await guard(request, "POST", "/api/v1/suppressions")
    try:
        item = suppressions.SuppressionIn(address=address, reason="manual", detail=detail or None)
    except pydantic.ValidationError as exc:
        raise bad_input(exc) from exc
    await suppressions.add(item, service, session.principal, request)
    return redirect(request, "/ui/suppressions", notice=f"{item.address} suppressed")


@router.post("/ui/suppressions/remove")
async def unsuppress(
    request: Request, session: AdminForm, address: Annotated[str, Form(max_length=320)]
) -> Response:
    service = await guard(request, "DELETE", "/api/v1/suppressions/x")
    removed = await suppressions.remove(address, service, session.principal, request)
    return redirect(request, "/ui/suppressions", notice=f"{removed['address']} may be written to")


@router.post("/ui/backups")
async def create_backup(request: Request, session: AdminForm) -> Response:
    service = await guard(request, "POST", "/api/v1/backups")
    created = await backups.create(service, session.principal, request)
    return redirect(request, "/ui/backups", notice=f"backup {created['name']} written")


@router.post("/ui/backups/{name}/verify", response_class=HTMLResponse)
async def verify_backup(name: str, request: Request, session: AdminForm) -> Any:
    service = await guard(request, "GET", f"/api/v1/backups/{name}/verify")
    report = await backups.verify(name, service, session.principal, request)
    listed = await backups.list_backups(service, session.principal)
    return page(request, "backups.html", active="backups", listed=listed, report=report,
                notice=None, status=200 if report["ok"] else 409)

