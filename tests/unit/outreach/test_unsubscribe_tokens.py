"""Unsubscribe tokens: made with the secret, for one address, and nothing else passes."""

from __future__ import annotations

import pytest

from email_sender.errors import NotFound
from email_sender.outreach.unsubscribe import (
    address_from_token,
    list_unsubscribe_headers,
    make_token,
)

SECRET = b"an-unsubscribe-secret"


def test_a_token_gives_back_its_address() -> None:
    token = make_token(" Venue@Example.ORG ", SECRET)
    assert address_from_token(token, SECRET) == "venue@example.org"
    assert "=" not in token and "/" not in token and "+" not in token  # safe in a URL path


def test_a_token_for_one_address_cannot_serve_another() -> None:
    mine = make_token("me@example.org", SECRET)
    other_payload = make_token("you@example.org", SECRET).split(".")[0]
    forged = other_payload + "." + mine.split(".")[1]
    with pytest.raises(NotFound):
        address_from_token(forged, SECRET)


@pytest.mark.parametrize("token", ["", ".", "garbage", "a.b", "%%%.%%%", "bWU.AAAA"])
def test_garbage_is_not_a_token(token: str) -> None:
    with pytest.raises(NotFound):
        address_from_token(token, SECRET)


def test_another_secret_does_not_verify() -> None:
    with pytest.raises(NotFound):
        address_from_token(make_token("me@example.org", b"another-secret"), SECRET)


def test_the_headers_carry_the_link_and_one_click() -> None:
    headers = list_unsubscribe_headers(
        "me@example.org", base_url="https://mail.example.org/u/", secret=SECRET
    )
    token = make_token("me@example.org", SECRET)
    assert headers == {
        "List-Unsubscribe": f"<https://mail.example.org/u/{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
