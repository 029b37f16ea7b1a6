"""API keys with scopes, stored as SHA-256 hashes and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from email_sender.settings import SecuritySettings

SCOPES = ("send", "read", "admin")


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


# Without keys configured the service binds to loopback only and everyone is this principal.
LOCAL_OPERATOR = Principal("local", frozenset(SCOPES))


class KeyRing:
    def __init__(self, security: SecuritySettings) -> None:
        self._keys = [
            (bytes.fromhex(key.key_sha256 or ""), Principal(key.name, frozenset(key.scopes)))
            for key in security.api_keys
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        # Compare against every key, so timing says nothing about which one matched.
        for stored, principal in self._keys:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found

    def holds(self, principal: Principal) -> bool:
        """Whether a key of this name and these scopes is configured now."""
        return any(held == principal for _, held in self._keys)
