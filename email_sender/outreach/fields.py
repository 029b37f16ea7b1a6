"""What a contact may hold, checked the same way for the API and for imports.

Every check names its field: an address that is not one, a time zone the IANA database does
not know, attributes that are not a small JSON object. Addresses are kept normalised and
lower-cased, so one address is one contact.
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from typing import Annotated, Any

import email_validator
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_TAGS = 50

Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


@functools.cache
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def normalise_email(value: str) -> str:
    """The address as kept (normalised, lower-cased); ValueError saying why it is not one."""
    try:
        address = email_validator.validate_email(value, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return address.lower()


def _printable(value: str) -> str:
    if any(not char.isprintable() for char in value):
        raise ValueError("holds a control character")
    return value


class Consent(BaseModel):
    """The GDPR basis for writing to the contact, and where it came from."""

    model_config = ConfigDict(extra="forbid")

    basis: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")]
    source: Line | None = None


class ContactFields(BaseModel):
    """Every field of a contact but its status; all optional (a PATCH sends some)."""

    model_config = ConfigDict(extra="forbid")

    name: Line | None = None
    organisation: Line | None = None
    city: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    region: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    country: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    timezone: str | None = Field(None, max_length=64, description="IANA, such as Europe/Paris")
    language: str | None = Field(None, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    tags: list[Tag] | None = Field(None, max_length=MAX_TAGS)
    attributes: dict[str, Any] | None = None
    consent: Consent | None = None
    notes: str | None = Field(None, max_length=10_000)

    @field_validator("name", "organisation", "city", "region", "country")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return None if value is None else _printable(value)

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        if value is not None and value not in known_timezones():
            raise ValueError(f"{value!r} is not an IANA time zone (such as Europe/Paris)")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return list(dict.fromkeys(_printable(tag) for tag in value))  # each once, in order

    @field_validator("attributes")
    @classmethod
    def _small_json(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"over {MAX_ATTRIBUTES_BYTES} bytes as JSON")
        return value

    def columns(self) -> dict[str, Any]:
        """The storage columns of the fields that were given."""
        given = self.model_dump(exclude_unset=True)
        consent = given.pop("consent", "absent")
        if consent != "absent":
            given["consent_basis"] = consent["basis"] if consent else None
            given["consent_source"] = consent.get("source") if consent else None
        for name in ("tags", "attributes"):
            if name in given and given[name] is None:
                given[name] = [] if name == "tags" else {}
        return given


class NewContact(ContactFields):
    email: str = Field(max_length=320)
    status: str | None = Field(None, description="the lifecycle's initial status when absent")

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalise_email(value)
