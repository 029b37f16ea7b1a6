"""Signed VERP addresses: round trip, tampering, other domains, case, garbage; plus-tags."""

from __future__ import annotations

import uuid

import pytest

from email_sender.errors import ValidationError
from email_sender.inbound.verp import email_id_from_verp, plus_tag, verp_address

SECRET = b"a secret of the service"
DOMAIN = "bounce.example.org"
EMAIL_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def read(address: str, *, domain: str = DOMAIN, secret: bytes = SECRET) -> str | None:
    return email_id_from_verp(address, domain=domain, secret=secret)


def test_address_shape() -> None:
    address = verp_address(EMAIL_ID, domain=DOMAIN, secret=SECRET)
    local_part, domain = address.split("@")
    assert domain == DOMAIN
    assert local_part.startswith("bounces+0f8fad5bd9cb469fa16570867728950e-")
    assert len(local_part.split("-")[-1]) == 10
    assert address == address.lower()


def test_round_trip_for_many_ids() -> None:
    for _ in range(50):
        email_id = str(uuid.uuid4())
        assert read(verp_address(email_id, domain=DOMAIN, secret=SECRET)) == email_id


def test_custom_local_part_and_mixed_case_domain() -> None:
    address = verp_address(EMAIL_ID, domain="Bounce.Example.ORG", secret=SECRET, local="Rp")
    assert address.startswith("rp+") and address.endswith("@bounce.example.org")
    assert email_id_from_verp(address, domain=DOMAIN, secret=SECRET, local="rp") == EMAIL_ID
    assert read(address) is None  # not the default local part


def test_upper_cased_and_bracketed_address_is_still_accepted() -> None:
    address = verp_address(EMAIL_ID, domain=DOMAIN, secret=SECRET)
    assert read(address.upper()) == EMAIL_ID
    assert read(f" <{address}> ") == EMAIL_ID


def test_tampered_token_is_refused() -> None:
    address = verp_address(EMAIL_ID, domain=DOMAIN, secret=SECRET)
    other_id = uuid.UUID(EMAIL_ID).hex[:-1] + "f"
    signature = address.split("-")[-1].split("@")[0]
    forged = f"bounces+{other_id}-{signature}@{DOMAIN}"
    assert read(forged) is None
    flipped = address.replace(signature, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert read(flipped) is None


def test_other_secret_or_domain_is_refused() -> None:
    address = verp_address(EMAIL_ID, domain=DOMAIN, secret=SECRET)
    assert read(address, secret=b"another secret") is None
    assert read(address, domain="example.org") is None
    assert read(address.replace(DOMAIN, "evil.example")) is None


@pytest.mark.parametrize(
    "address",
    [
        "",
        "@",
        "bounces@bounce.example.org",
        "bounces+@bounce.example.org",
        "bounces+nothex-0123456789@bounce.example.org",
        "bounces+0f8fad5bd9cb469fa16570867728950e@bounce.example.org",
        "bounces+0f8fad5bd9cb469fa16570867728950e-01234@bounce.example.org",
        "other+0f8fad5bd9cb469fa16570867728950e-0123456789@bounce.example.org",
        "no at sign at all",
        "bounces+\u00e9\u00e9@bounce.example.org",
    ],
)
def test_garbage_is_none(address: str) -> None:
    assert read(address) is None


def test_an_id_that_is_not_a_uuid_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        verp_address("not-a-uuid", domain=DOMAIN, secret=SECRET)
    assert caught.value.field == "email_id"


@pytest.mark.parametrize(
    ("address", "tag"),
    [
        ("user+tag@example.com", "tag"),
        ("booking+0f8fad5b-d9cb-469f-a165-70867728950e@example.com",
         "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("<user+a+b@example.com>", "a+b"),
        ("user@example.com", None),
        ("user+@example.com", None),
        ("user+tag", None),
        ("", None),
    ],
)  # fmt: skip
def test_plus_tag(address: str, tag: str | None) -> None:
    assert plus_tag(address) == tag
