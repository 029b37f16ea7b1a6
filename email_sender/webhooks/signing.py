"""Signatures of outgoing webhook deliveries: HMAC-SHA256 over the timestamp and the body.

Every delivery carries two headers::

    X-Email-Sender-Timestamp: 1763734386
    X-Email-Sender-Signature: sha256=5f0c…

The signature is the hex HMAC-SHA256, keyed with the webhook's secret, of the bytes
``"<timestamp>.<body>"``: the timestamp header as sent, a dot, then the request body exactly as
received (before any JSON parsing, which could reorder or re-encode it).

How a receiver verifies a delivery:

1. Read the raw body bytes and the two headers.
2. Refuse it when the timestamp is further than a few minutes (300 s here) from its own clock:
   a captured request replayed later then fails even though its signature is genuine.
3. Compute ``HMAC-SHA256(secret, timestamp + "." + body)`` and compare it with the header in
   constant time (``hmac.compare_digest``), never with ``==``, which leaks how many leading
   characters matched.
4. Deduplicate on ``X-Email-Sender-Delivery`` (or the body's event ``id``): a delivery whose
   answer was lost is posted again, with the same ids.

``verify`` below does steps 2 and 3; a Python receiver can use it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SCHEME = "sha256="
# Seconds a receiver accepts between the signed timestamp and its own clock, either way.
DEFAULT_TOLERANCE = 300
# Bytes of randomness behind a generated secret (43 URL-safe characters).
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh secret for a subscription created without one."""
    return secrets.token_urlsafe(SECRET_BYTES)


def signed_bytes(timestamp: int | str, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    digest = hmac.new(secret.encode(), signed_bytes(timestamp, body), hashlib.sha256)
    return SCHEME + digest.hexdigest()


def verify(
    secret: str,
    timestamp: int | str,
    body: bytes,
    signature: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` is ours for this body and ``timestamp`` lies within ``tolerance``."""
    try:
        signed_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        return False
    # Sign the timestamp as received: "0123" and "123" are different signed texts.
    expected = sign(secret, str(timestamp), body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())
