"""Who is using the console: the session behind each page, its scopes and its CSRF token."""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, Request

from email_sender.api.security import LOCAL_OPERATOR, KeyRing
from email_sender.web.session import COOKIE, Session, SessionSigner


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class ConsoleRefused(Exception):
    """A console request that cannot be done: shown as a page with its status and reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def signer_of(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.console_sessions
    return signer


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: object, token: str) -> None:
    response.set_cookie(  # type: ignore[attr-defined]
        COOKIE,
        token,
        max_age=int(signer_of(request).ttl),
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def current_session(request: Request) -> Session:
    """The signed-in session; without keys configured (loopback only), the local operator's."""
    signer = signer_of(request)
    session = signer.read(request.cookies.get(COOKIE))
    if session is None:
        keys: KeyRing = request.app.state.keys
        if keys.enabled:
            raise SignInRequired(quote(request.url.path))
        token, session = signer.issue(LOCAL_OPERATOR)
        # Set on the response by the page renderer, which looks for it here.
        request.state.new_session_token = token
    request.state.console_session = session
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def checked_form(session: SessionDep, csrf: Annotated[str, Form(max_length=128)] = "") -> Session:
    """A form post carries the session's CSRF token; a cross-site one cannot know it."""
    if not csrf or not hmac.compare_digest(csrf, session.csrf):
        raise ConsoleRefused(403, "the form's security token is missing or stale: reload the page")
    return session


FormSession = Annotated[Session, Depends(checked_form)]


def admin_of(session: Session) -> Session:
    if not session.principal.allows("admin"):
        raise ConsoleRefused(403, "this needs an API key with the 'admin' scope")
    return session


def require_admin(session: FormSession) -> Session:
    return admin_of(session)


AdminForm = Annotated[Session, Depends(require_admin)]
