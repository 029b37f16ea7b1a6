"""One-click unsubscribe links (RFC 8058): a page with one button, and the POST that acts.

Public (the signed token is the credential). The POST unsubscribes at once, with no
confirmation step, as RFC 8058 asks: mail clients send it themselves from their own button.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from email_sender.api.deps import ServiceDep, client_ip
from email_sender.errors import NotFound
from email_sender.outreach.unsubscribe import Unsubscriber, address_from_token
from email_sender.service import Service

router = APIRouter(prefix="/u", tags=["unsubscribe"])

PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;
color:#1a1a1a}}button{{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:.3rem;
background:#1d4ed8;color:#fff;cursor:pointer}}button:focus{{outline:3px solid #93c5fd}}</style>
</head><body><main><h1>{title}</h1>{body}</main></body></html>"""


def _unsubscriber(service: Service) -> Unsubscriber:
    if service.unsubscriber is None:
        raise NotFound("unsubscribe links are not configured on this service")
    return service.unsubscriber


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


@router.get("/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, service: ServiceDep) -> HTMLResponse:
    """A page with one button that unsubscribes the link's address."""
    unsubscriber = _unsubscriber(service)
    address = address_from_token(token, unsubscriber.secret)
    shown = html.escape(address)
    if await unsubscriber.is_unsubscribed(address):
        return _page("Désinscription faite", f"<p>{shown} ne recevra plus nos messages.</p>"
                     f"<p lang=\"en\">{shown} will not receive our messages any more.</p>")
    return _page(
        "Se désinscrire",
        f"<p>Ne plus envoyer de messages à <strong>{shown}</strong> ?</p>"
        f"<p lang=\"en\">Stop sending messages to <strong>{shown}</strong>?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Me désinscrire / Unsubscribe</button></form>',
    )


@router.post("/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, service: ServiceDep) -> HTMLResponse:
    """Unsubscribe the link's address at once (RFC 8058 one-click); doing it twice is harmless."""
    unsubscriber = _unsubscriber(service)
    address = address_from_token(token, unsubscriber.secret)
    await unsubscriber.unsubscribe(address, client_ip=client_ip(request))
    shown = html.escape(address)
    return _page("Désinscription faite", f"<p>{shown} ne recevra plus nos messages.</p>"
                 f"<p lang=\"en\">{shown} will not receive our messages any more.</p>")
