"""Console sessions: a signed cookie naming the API key's principal, and its CSRF token.

The cookie holds ``base64url(json) . base64url(HMAC-SHA256)``: the principal's name and scopes,
an expiry, and a random nonce that is the session's CSRF token. Nothing is kept server-side, so
every read checks that the key ring still holds that principal with those scopes: removing a key
from the config signs its sessions out at the next restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from email_sender.api.security import LOCAL_OPERATOR, KeyRing, Principal
from email_sender.settings import SecuritySettings

COOKIE = "es_session"
# The sign-in form's own token, before there is a session to hold one.
SIGNIN_COOKIE = "es_signin"
SIGNIN_TTL = 15 * 60.0


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires: float


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, security: SecuritySettings, keys: KeyRing) -> None:
        secret = security.session_secret
        self._secret = (
            secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        )
        self._ttl = security.session_ttl
        self._keys = keys

    def _sign(self, purpose: str, payload: bytes) -> str:
        mac = hmac.new(self._secret, purpose.encode() + b"\0" + payload, hashlib.sha256)
        return _b64(mac.digest())

    def _seal(self, purpose: str, fields: dict[str, object]) -> str:
        payload = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{self._sign(purpose, payload)}"

    def _open(self, purpose: str, token: str | None) -> dict[str, object] | None:
        if not token or token.count(".") != 1 or len(token) > 4096:
            return None
        encoded, signature = token.split(".")
        try:
            payload = _unb64(encoded)
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(purpose, payload)):
            return None
        fields = json.loads(payload)
        if not isinstance(fields, dict) or float(fields.get("exp", 0)) < time.time():
            return None
        return fields

    def issue(self, principal: Principal) -> tuple[str, Session]:
        session = Session(principal, secrets.token_urlsafe(24), time.time() + self._ttl)
        token = self._seal(
            "session",
            {
                "name": principal.name,
                "scopes": sorted(principal.scopes),
                "csrf": session.csrf,
                "exp": session.expires,
            },
        )
        return token, session

    def read(self, token: str | None) -> Session | None:
        fields = self._open("session", token)
        if fields is None:
            return None
        name, scopes = fields.get("name"), fields.get("scopes")
        if not isinstance(name, str) or not isinstance(scopes, list):
            return None
        principal = Principal(name, frozenset(map(str, scopes)))
        if not self._still_valid(principal):
            return None
        return Session(principal, str(fields["csrf"]), float(fields["exp"]))  # type: ignore[arg-type]

    def _still_valid(self, principal: Principal) -> bool:
        if not self._keys.enabled:
            return principal == LOCAL_OPERATOR
        return self._keys.holds(principal)

    def signin_token(self) -> tuple[str, str]:
        """A cookie value and the form token it vouches for (login CSRF)."""
        nonce = secrets.token_urlsafe(24)
        return self._seal("signin", {"csrf": nonce, "exp": time.time() + SIGNIN_TTL}), nonce

    def signin_nonce(self, token: str | None) -> str | None:
        fields = self._open("signin", token)
        return str(fields["csrf"]) if fields else None

    @property
    def ttl(self) -> float:
        return self._ttl
