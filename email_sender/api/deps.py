"""Route dependencies as ``Annotated`` aliases.

Each is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in a worker
thread, a hop to another thread and back per dependency per request, which under load costs more
than the checks themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from email_sender.api.security import LOCAL_OPERATOR, KeyRing, Principal
from email_sender.service import Service


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def _principal(request: Request) -> Principal:
    keys: KeyRing = request.app.state.keys
    if not keys.enabled:
        return LOCAL_OPERATOR
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            401,
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = keys.authenticate(token.strip())
    if principal is None:
        raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


def require(scope: str) -> object:
    async def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.allows(scope):
            raise HTTPException(403, f"this API key lacks the {scope!r} scope")
        return principal

    return Depends(check)


SendScope = Annotated[Principal, require("send")]
ReadScope = Annotated[Principal, require("read")]
AdminScope = Annotated[Principal, require("admin")]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
