"""The operator console: server-rendered pages at ``/`` and ``/ui/...``, served by the API.

Layers: ``pages`` (views) and ``actions`` (form posts) call the API's route functions; ``auth``
and ``session`` say who is signed in; ``render`` turns templates into answers; ``overview``
reads the live figures. Static assets are served from ``static/``: nothing comes from a CDN.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from email_sender.api.middleware import is_console
from email_sender.web import actions, pages
from email_sender.web.auth import ConsoleRefused, SignInRequired
from email_sender.web.render import STATIC, page, redirect
from email_sender.web.session import SessionSigner


def install(app: FastAPI) -> None:
    """Mount the console on ``app``; call after ``app.state.keys`` is set."""
    app.state.console_sessions = SessionSigner(app.state.service.settings.security, app.state.keys)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return redirect(request, f"/ui/signin?next={exc.next_path}")

    @app.exception_handler(ConsoleRefused)
    async def _refused(request: Request, exc: ConsoleRefused) -> Response:
        return page(request, "error.html", status=exc.status, message=exc.message)


def error_page(request: Request, status: int, message: str) -> Response | None:
    """An error on a console path as a page, not JSON; None elsewhere."""
    if not is_console(request.url.path):
        return None
    return page(request, "error.html", status=status, message=message)
