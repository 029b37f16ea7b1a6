"""Webhook signatures: what a receiver computes, and what verify refuses."""

import hashlib
import hmac

import pytest

from email_sender.webhooks.signing import new_secret, sign, verify

SECRET = "s3cret-s3cret-s3cret"
BODY = b'{"id":"e1","type":"email.sent","time":"2026-01-01T00:00:00.000+00:00","data":{}}'
NOW = 1_763_734_386


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_verify_accepts_its_own_signature_within_the_window() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert verify(SECRET, NOW, BODY, signature, now=NOW)
    assert verify(SECRET, str(NOW), BODY, signature, now=NOW + 299)
    assert verify(SECRET, NOW, BODY, signature, now=NOW - 299)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now"),
    [
        ("another-secret-entirely", NOW, BODY, NOW),  # wrong secret
        (SECRET, NOW, BODY + b" ", NOW),  # body changed by one byte
        (SECRET, NOW + 1, BODY, NOW),  # timestamp changed: it is signed too
        (SECRET, NOW, BODY, NOW + 301),  # replayed after the window
        (SECRET, NOW, BODY, NOW - 301),  # signed in the future beyond the window
    ],
)
def test_verify_refuses(secret: str, timestamp: int, body: bytes, now: int) -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(secret, timestamp, body, signature, now=now)


def test_verify_refuses_garbage_without_raising() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, "not-a-number", BODY, signature, now=NOW)
    assert not verify(SECRET, NOW, BODY, "sha256=", now=NOW)
    assert not verify(SECRET, NOW, BODY, signature.removeprefix("sha256="), now=NOW)
    assert not verify(SECRET, NOW, BODY, "sha256=é", now=NOW)


def test_tolerance_is_adjustable() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, NOW, BODY, signature, tolerance=10, now=NOW + 11)
    assert verify(SECRET, NOW, BODY, signature, tolerance=10, now=NOW + 10)


def test_generated_secrets_are_long_and_distinct() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(secret) >= 40 for secret in secrets)
