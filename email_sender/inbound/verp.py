"""Signed VERP return paths: the bounce address itself names the email that bounced.

Each email is sent with the envelope sender ``bounces+<email uuid hex>-<signature>@domain``. A
bounce comes back to that address, so it is linked to its email without trusting anything the
remote MTA copied (or failed to copy) into the report. The signature (an HMAC of the id) stops
anyone from forging bounces for emails they did not receive. Tokens are lower-case hex only,
because some MTAs lower-case local parts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

from email_sender.errors import ValidationError

_SIGNATURE_CHARS = 10
_TOKEN = re.compile(rf"([0-9a-f]{{32}})-([0-9a-f]{{{_SIGNATURE_CHARS}}})")


def verp_address(email_id: str, *, domain: str, secret: bytes, local: str = "bounces") -> str:
    """The return path for email ``email_id``: ``bounces+<uuid hex>-<signature>@domain``."""
    try:
        id_hex = uuid.UUID(str(email_id)).hex
    except ValueError as exc:
        raise ValidationError("email_id", f"not a UUID: {email_id!r}") from exc
    return f"{local.lower()}+{id_hex}-{_signature(id_hex, secret)}@{domain.lower()}"


def email_id_from_verp(
    address: str, *, domain: str, secret: bytes, local: str = "bounces"
) -> str | None:
    """The email id (UUID with dashes) a VERP address of ours names, None for any other address."""
    local_part, at, address_domain = address.strip().strip("<>").lower().rpartition("@")
    if not at or address_domain != domain.lower():
        return None
    prefix, plus, token = local_part.partition("+")
    if not plus or prefix != local.lower():
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    id_hex, signature = match.groups()
    if not hmac.compare_digest(signature, _signature(id_hex, secret)):
        return None
    return str(uuid.UUID(hex=id_hex))


def plus_tag(address: str) -> str | None:
    """The tag of a plus-address: ``"user+tag@dom"`` -> ``"tag"``; None without one."""
    local_part, at, _ = address.strip().strip("<>").rpartition("@")
    if not at:
        return None
    _, plus, tag = local_part.partition("+")
    return tag if plus and tag else None


def _signature(id_hex: str, secret: bytes) -> str:
    digest = hmac.new(secret, id_hex.encode("ascii"), hashlib.sha256).hexdigest()
    return digest[:_SIGNATURE_CHARS]
