"""Outgoing event webhooks: subscribe a URL to events, list, remove, and read its deliveries."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from email_sender.api.deps import AdminScope, ServiceDep, client_ip
from email_sender.api.views import iso
from email_sender.db import audit
from email_sender.errors import ValidationError
from email_sender.events import EVENT_TYPES
from email_sender.service import Service
from email_sender.settings import mask_secrets
from email_sender.webhooks.addresses import written_local
from email_sender.webhooks.dispatcher import WebhookDispatcher
from email_sender.webhooks.signing import new_secret
from email_sender.webhooks.store import EVERY_EVENT, WebhookStore

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

MAX_URL_LENGTH = 2048


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_LENGTH)
    events: list[str] = Field(min_length=1, max_length=100)
    secret: str | None = Field(None, min_length=16, max_length=256)
    description: str | None = Field(None, max_length=2000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError("the URL has spaces or control characters; percent-encode them")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 -- raises on a port that is not a number or out of range
            httpx.URL(value)  # what the dispatcher will post to must parse there too
        except (ValueError, httpx.InvalidURL) as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if parts.scheme not in ("http", "https"):
            raise ValueError("the scheme must be http or https")
        if not parts.hostname:
            raise ValueError("the URL names no host")
        return value

    @field_validator("events")
    @classmethod
    def _event_types(cls, value: list[str]) -> list[str]:
        for event_type in value:
            if event_type != EVERY_EVENT and event_type not in EVENT_TYPES:
                raise ValueError(
                    f"{event_type[:100]!r} is not an event this service publishes; "
                    f"one of {', '.join(EVENT_TYPES)}, or '*' for all"
                )
        return list(dict.fromkeys(value))  # each once, in the order given


def _view(row: dict[str, Any]) -> dict[str, Any]:
    """A subscription as shown: never its secret."""
    return {
        "id": row["id"],
        "url": mask_secrets(row["url"]),
        "events": row["events"],
        "description": row["description"],
        "active": bool(row["active"]),
        "created_at": iso(row["created_at"]),
    }


def _delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "created_at": iso(row["created_at"]),
        "delivered_at": iso(row["delivered_at"]),
        "next_attempt_at": iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
    }


def _refuse_private_host(url: str) -> None:
    """Unless the operator allows it, a webhook must not reach into the service's own network
    (the dispatcher checks the resolved address again before every post)."""
    host = urlsplit(url).hostname or ""
    if written_local(host):
        raise ValidationError(
            "url",
            f"{host} is a local or private address; set webhooks.allow_private_networks "
            "to subscribe one",
        )


def _changed(service: Service) -> None:
    """Tell this node's dispatcher at once; other nodes see it within their cache time."""
    dispatcher = service.get("webhooks")
    if isinstance(dispatcher, WebhookDispatcher):
        dispatcher.subscriptions_changed()


@router.post("", status_code=201)
async def create_webhook(
    item: WebhookIn, service: ServiceDep, principal: AdminScope, request: Request
) -> dict[str, Any]:
    """Subscribe a URL to events; the answer shows the signing secret, this once only."""
    if not service.settings.webhooks.allow_private_networks:
        _refuse_private_host(item.url)
    row = await WebhookStore(service.db).create(
        url=item.url,
        events=item.events,
        secret=item.secret or new_secret(),
        description=item.description,
    )
    _changed(service)
    await audit.record(
        service.db,
        actor=principal.name,
        action="webhook_created",
        target=row["id"],
        details={"url": mask_secrets(item.url), "events": item.events},
        client_ip=client_ip(request),
    )
    return {**_view(row), "secret": row["secret"]}


@router.get("")
async def list_webhooks(
    service: ServiceDep,
    _: AdminScope,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Subscriptions, newest first."""
    rows, next_cursor = await WebhookStore(service.db).page(limit=limit, cursor=cursor)
    return {"items": [_view(row) for row in rows], "next_cursor": next_cursor}


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: str, service: ServiceDep, _: AdminScope) -> dict[str, Any]:
    """One subscription (without its secret)."""
    return _view(await WebhookStore(service.db).get(webhook_id))


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: str, service: ServiceDep, principal: AdminScope, request: Request
) -> Response:
    """Remove a subscription; its pending deliveries are dropped, never posted."""
    await WebhookStore(service.db).delete(webhook_id)
    _changed(service)
    await audit.record(
        service.db,
        actor=principal.name,
        action="webhook_deleted",
        target=webhook_id,
        client_ip=client_ip(request),
    )
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    service: ServiceDep,
    _: AdminScope,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """A subscription's deliveries, newest first: status, attempts, last answer or error."""
    rows, next_cursor = await WebhookStore(service.db).deliveries(
        webhook_id, limit=limit, cursor=cursor
    )
    return {"items": [_delivery_view(row) for row in rows], "next_cursor": next_cursor}
