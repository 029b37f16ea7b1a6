"""Console session cookies: signed, expiring, bound to a key that is still configured."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from email_sender.api.security import LOCAL_OPERATOR, KeyRing, Principal
from email_sender.settings import ApiKeySettings, SecuritySettings
from email_sender.web.session import SessionSigner


def security(*keys: ApiKeySettings, secret: str | None = "s3cret", ttl: float = 60.0) -> (
    SecuritySettings
):
    return SecuritySettings(
        api_keys=list(keys),
        session_secret=SecretStr(secret) if secret else None,
        session_ttl=ttl,
    )


OPS = ApiKeySettings(name="ops", key="ops-key", scopes=["admin"])  # type: ignore[arg-type]
VIEWER = ApiKeySettings(name="viewer", key="read-key", scopes=["read"])  # type: ignore[arg-type]


def signer(settings: SecuritySettings) -> SessionSigner:
    return SessionSigner(settings, KeyRing(settings))


def test_a_session_reads_back_with_its_principal_and_token() -> None:
    issuing = signer(security(OPS, VIEWER))
    token, session = issuing.issue(Principal("viewer", frozenset({"read"})))
    read = issuing.read(token)
    assert read == session
    assert read is not None and len(read.csrf) >= 32


@pytest.mark.parametrize("change", ["payload", "signature", "garbage", "empty", "huge"])
def test_a_changed_cookie_is_no_session(change: str) -> None:
    issuing = signer(security(OPS))
    token, _ = issuing.issue(Principal("ops", frozenset({"admin"})))
    payload, signature = token.split(".")
    altered = {
        "payload": f"{payload[:-2]}AA.{signature}",
        "signature": f"{payload}.{signature[:-2]}AA",
        "garbage": "not-a-token",
        "empty": "",
        "huge": "a" * 5000 + "." + signature,
    }[change]
    assert issuing.read(altered) is None


def test_sessions_expire_and_need_the_same_secret() -> None:
    short = signer(security(OPS, ttl=0.01))
    token, _ = short.issue(Principal("ops", frozenset({"admin"})))
    time.sleep(0.05)
    assert short.read(token) is None
    token, _ = signer(security(OPS)).issue(Principal("ops", frozenset({"admin"})))
    assert signer(security(OPS, secret="another")).read(token) is None
    # Without a configured secret each signer draws its own: a restart signs everyone out.
    drawn, _ = signer(security(OPS, secret=None)).issue(Principal("ops", frozenset({"admin"})))
    assert signer(security(OPS, secret=None)).read(drawn) is None


def test_a_removed_or_narrowed_key_ends_its_sessions() -> None:
    token, _ = signer(security(OPS, VIEWER)).issue(Principal("ops", frozenset({"admin"})))
    assert signer(security(VIEWER)).read(token) is None
    narrowed = ApiKeySettings(name="ops", key="ops-key", scopes=["read"])  # type: ignore[arg-type]
    assert signer(security(narrowed)).read(token) is None
    # Keys configured later end the local operator's keyless session.
    local, _ = signer(security()).issue(LOCAL_OPERATOR)
    assert signer(security()).read(local) is not None
    assert signer(security(OPS)).read(local) is None


def test_a_sign_in_token_is_not_a_session_nor_the_reverse() -> None:
    issuing = signer(security(OPS))
    cookie, nonce = issuing.signin_token()
    assert issuing.signin_nonce(cookie) == nonce
    assert issuing.read(cookie) is None
    session_token, _ = issuing.issue(Principal("ops", frozenset({"admin"})))
    assert issuing.signin_nonce(session_token) is None
