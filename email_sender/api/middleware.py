"""ASGI middleware: request context, limits, and the one place where service modes are enforced.

Written as plain ASGI callables (not ``BaseHTTPMiddleware``) so they add no task per request.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
import uuid
from typing import Any

from cachetools import TTLCache
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from email_sender import metrics
from email_sender.api.errors import RETRY_AFTER_SECONDS, error_body
from email_sender.errors import StoreError
from email_sender.log import request_id_var
from email_sender.modes import Mode, ModeStore
from email_sender.settings import SecuritySettings

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

# Paths that always answer, whatever the mode.
_ALWAYS_OPEN = ("/health", "/api/v1/maintenance")
# POST routes that only read; they go on in read-only mode.
_READ_POSTS = re.compile(r"^/api/v1/(search|collections/[^/]+/points/search|tasks/search)$")
# Operator routes that keep working in read-only mode (not in maintenance).
_OPERATOR = ("/api/v1/managers", "/api/v1/events")
# The console checks each page against the API route it stands in for (``blocked_by``), so that
# an operator in maintenance still sees the overview and can switch the mode back.
CONSOLE_PREFIX = "/ui/"


def is_console(path: str) -> bool:
    return path == "/" or path.startswith(CONSOLE_PREFIX)


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# The write paths that take another body than JSON, and the types they take: the provider
# webhook a raw RFC 5322 message, the contact import CSV or JSON lines.
RAW_BODY_TYPES = {
    "/api/v1/inbound": (b"message/rfc822", b"text/plain", b"application/octet-stream"),
    "/api/v1/contacts/import": (b"text/csv", b"application/x-ndjson", b"application/jsonl"),
}
# Unsubscribe links take what a mail client's one-click POST sends (RFC 8058) or a form; the
# console posts forms.
FORM_PREFIX = ("/u/", "/ui/")
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data", b"text/plain")


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``; FastAPI passes an HTTPException through its body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body is over the limit of {limit} bytes")


class RequestContextMiddleware:
    """Request id, access log, per-route metrics, blocked IPs, rate limit, body limits."""

    def __init__(self, app: ASGIApp, *, security: SecuritySettings, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.blocked = [ipaddress.ip_network(value, strict=False) for value in security.blocked_ips]
        self.rate = security.rate_limit
        self._buckets: TTLCache[str, list[float]] = TTLCache(maxsize=100_000, ttl=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}
        peer = scope.get("client")
        client = peer[0] if peer else "-"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            refusal = self._refuse(scope, headers, client)
            if refusal is not None:
                status, code, text = refusal
                await send_json(send_with_id, status, error_body(code, text))
            else:
                await self._call_limited(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            metrics.observe_request(template, method, status_holder["status"], elapsed)
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "http_request",
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "status": status_holder["status"],
                        "duration_ms": round(elapsed * 1000, 2),
                        "client_ip": client,
                    },
                )
            request_id_var.reset(token)

    def _refuse(
        self, scope: Scope, headers: dict[bytes, bytes], client: str
    ) -> tuple[int, str, str] | None:
        if self.blocked and client != "-":
            try:
                address = ipaddress.ip_address(client)
            except ValueError:
                address = None
            if address is not None and any(address in network for network in self.blocked):
                logger.warning("blocked_ip_refused", extra={"client_ip": client})
                return 403, "ip_blocked", "this address is blocked"
        if self.rate.enabled and not self._take_token(client):
            return 429, "rate_limited", "too many requests; slow down"
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, "bad_request", "Content-Length is not a number"
            if size > self.max_body_bytes:
                return (
                    413,
                    "payload_too_large",
                    f"body of {size} bytes is over the limit of {self.max_body_bytes} bytes",
                )
        if scope["method"] in _WRITE_METHODS and (length not in (None, b"0")):
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if content_type in RAW_BODY_TYPES.get(scope["path"], ()):
                return None
            if scope["path"].startswith(FORM_PREFIX) and content_type in FORM_TYPES:
                return None
            if content_type != b"application/json":
                shown = content_type.decode("latin-1") or "none"
                return (
                    415,
                    "unsupported_media_type",
                    (f"Content-Type must be application/json, got {shown}"),
                )
        return None

    def _take_token(self, client: str) -> bool:
        now = time.monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = [float(self.rate.burst), now]
        tokens = min(self.rate.burst, bucket[0] + (now - bucket[1]) * self.rate.requests_per_second)
        allowed = tokens >= 1.0
        self._buckets[client] = [tokens - 1.0 if allowed else tokens, now]
        return allowed

    async def _call_limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await send_json(
                    send,
                    413,
                    error_body(
                        "payload_too_large",
                        f"body is over the limit of {self.max_body_bytes} bytes",
                    ),
                )


class ModeMiddleware:
    """Read-only answers 503 to writes; maintenance answers 503 to all but health/maintenance."""

    def __init__(self, app: ASGIApp, *, modes: ModeStore) -> None:
        self.app = app
        self.modes = modes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith(_ALWAYS_OPEN) and not is_console(path):
            try:
                mode = await self.modes.current()
            except StoreError as exc:
                # Raised here it would pass every exception handler and leave as a bare 500.
                logger.warning("mode_unreadable", extra={"error": exc.message, "path": path})
                await send_json(
                    send,
                    503,
                    error_body(exc.code, exc.message),
                    headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
                )
                return
            if blocked_by(mode, scope["method"], path):
                message = (
                    "the service is in maintenance; only health and maintenance routes answer"
                    if mode is Mode.MAINTENANCE
                    else "the service is read-only; writes are refused until it leaves that mode"
                )
                await send_json(
                    send,
                    503,
                    error_body("service_mode", message, {"mode": mode.value}),
                    headers=[(b"retry-after", b"30")],
                )
                return
        await self.app(scope, receive, send)


def blocked_by(mode: Mode, method: str, path: str) -> bool:
    if mode is Mode.MAINTENANCE:
        return True
    if mode is Mode.READ_ONLY:
        return (
            method in _WRITE_METHODS
            and not _READ_POSTS.match(path)
            and not path.startswith(_OPERATOR)
        )
    return False
