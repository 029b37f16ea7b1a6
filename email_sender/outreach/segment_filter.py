"""What a segment selects: a filter over contacts, checked by field, matched in SQL and Python.

Status, country, language, time zone and the last-contact dates are SQL conditions. Tags and
attributes live in JSON columns, which SQLite and PostgreSQL query differently: SQL narrows the
rows with a LIKE over the column's text (every match holds the JSON-quoted tag or key), and
``matches`` decides exactly, row by row. Every condition must hold; a list matches any of its
values. An empty filter selects every contact.

Attributes: ``{"key": value}`` matches that exact value (a number also matches the same number
written as text, since CSV imports keep attributes as text); ``{"key": {"gte": 10, "lt": 50}}``
matches a number (or numeric text) within the bounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import pydantic
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import ColumnElement, Text, func, or_

from email_sender.db.schema import contacts
from email_sender.errors import ValidationError
from email_sender.outreach.fields import Tag, known_timezones

MAX_VALUES = 100  # in each list of the filter
MAX_ATTRIBUTES = 20
RANGE_BOUNDS = ("gt", "gte", "lt", "lte")

Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Country = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Language = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]


class SegmentFilter(BaseModel):
    """Conditions on contacts, all of which must hold; absent ones are not checked."""

    model_config = ConfigDict(extra="forbid")

    statuses: list[str] | None = Field(None, min_length=1, max_length=MAX_VALUES)
    tags_any: list[Tag] | None = Field(None, min_length=1, max_length=MAX_VALUES)
    tags_all: list[Tag] | None = Field(None, min_length=1, max_length=MAX_VALUES)
    attributes: dict[Key, Any] | None = Field(
        None, description="key → exact value, or {gte, lte, gt, lt: number}"
    )
    countries: list[Country] | None = Field(None, min_length=1, max_length=MAX_VALUES)
    languages: list[Language] | None = Field(
        None, min_length=1, max_length=MAX_VALUES, description="fr also matches fr-CA"
    )
    timezones: list[str] | None = Field(None, min_length=1, max_length=MAX_VALUES)
    last_contacted_before: AwareDatetime | None = None
    last_contacted_after: AwareDatetime | None = None
    never_contacted: bool | None = None

    @field_validator("attributes")
    @classmethod
    def _attribute_conditions(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        return {key: _attribute_condition(key, wanted) for key, wanted in value.items()}

    @field_validator("timezones")
    @classmethod
    def _iana(cls, value: list[str] | None) -> list[str] | None:
        for zone in value or ():
            if zone not in known_timezones():
                raise ValueError(f"{zone!r} is not an IANA time zone (such as Europe/Paris)")
        return value

    @field_validator("last_contacted_after")
    @classmethod
    def _after_before(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        before = info.data.get("last_contacted_before")
        if value is not None and before is not None and value >= before:
            raise ValueError("must be earlier than last_contacted_before")
        return value

    @field_validator("never_contacted")
    @classmethod
    def _not_both(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        dated = [name for name in ("last_contacted_before", "last_contacted_after")
                 if info.data.get(name) is not None]
        if value and dated:
            raise ValueError(f"true contradicts {' and '.join(dated)}")
        return value

    def stored(self) -> dict[str, Any]:
        """The filter as kept in the segment's row (and shown by the API)."""
        return self.model_dump(mode="json", exclude_none=True)

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions every match meets; with tags or attributes, a superset (see
        ``matches``)."""
        found: list[ColumnElement[bool]] = []
        if self.statuses is not None:
            found.append(contacts.c.status.in_(self.statuses))
        if self.countries is not None:
            found.append(func.lower(contacts.c.country).in_([c.lower() for c in self.countries]))
        if self.languages is not None:
            found.append(or_(*(
                or_(func.lower(contacts.c.language) == language,
                    func.lower(contacts.c.language).like(f"{language}-%"))
                for language in (value.lower() for value in self.languages)
            )))  # fmt: skip
        if self.timezones is not None:
            found.append(contacts.c.timezone.in_(self.timezones))
        if self.last_contacted_before is not None:
            found.append(contacts.c.last_contacted_at < self.last_contacted_before.timestamp())
        if self.last_contacted_after is not None:
            found.append(contacts.c.last_contacted_at > self.last_contacted_after.timestamp())
        if self.never_contacted is True:
            found.append(contacts.c.last_contacted_at.is_(None))
        elif self.never_contacted is False:
            found.append(contacts.c.last_contacted_at.is_not(None))
        if self.tags_any is not None and all(tag.isascii() for tag in self.tags_any):
            found.append(or_(*(_holds(contacts.c.tags, tag) for tag in self.tags_any)))
        for tag in self.tags_all or ():
            if tag.isascii():
                found.append(_holds(contacts.c.tags, tag))
        for key in self.attributes or {}:
            if key.isascii():
                found.append(_holds(contacts.c.attributes, key))
        return found

    @property
    def checks_rows(self) -> bool:
        """Whether SQL alone is not exact: rows must also pass ``matches``."""
        return bool(self.tags_any or self.tags_all or self.attributes)

    def matches(self, tags: list[str], attributes: Mapping[str, Any]) -> bool:
        """The exact test of the JSON conditions on one contact's tags and attributes."""
        if self.tags_any is not None and not set(self.tags_any) & set(tags):
            return False
        if self.tags_all is not None and not set(self.tags_all) <= set(tags):
            return False
        for key, wanted in (self.attributes or {}).items():
            if key not in attributes or not _attribute_matches(attributes[key], wanted):
                return False
        return True


def parse_filter(value: SegmentFilter | Mapping[str, Any]) -> SegmentFilter:
    """A filter from its model or its JSON; ValidationError naming ``filter.<field>``."""
    if isinstance(value, SegmentFilter):
        return value
    try:
        return SegmentFilter.model_validate(value)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(["filter", *(str(part) for part in error["loc"])])
        reason = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise ValidationError(where, reason.removeprefix("Value error, ")) from exc


def _holds(column: Any, text: str) -> ColumnElement[bool]:
    """The JSON column's text holds ``text`` as a JSON string (a list item or a key)."""
    return column.cast(Text()).contains(json.dumps(text), autoescape=True)


def _attribute_condition(key: str, wanted: Any) -> Any:
    if isinstance(wanted, dict):
        bounds = {name: bound for name, bound in wanted.items() if bound is not None}
        if not bounds:
            raise ValueError(f"{key}: give at least one of {', '.join(RANGE_BOUNDS)}")
        for name, bound in bounds.items():
            if name not in RANGE_BOUNDS:
                raise ValueError(f"{key}: {name!r} is not one of {', '.join(RANGE_BOUNDS)}")
            if _number(bound) is None or isinstance(bound, str):
                raise ValueError(f"{key}.{name}: a number, not {bound!r}")
        return bounds
    if isinstance(wanted, str | bool | int) or (
        isinstance(wanted, float) and math.isfinite(wanted)
    ):
        return wanted
    raise ValueError(f"{key}: a text, number or true/false, or a range object")


def _attribute_matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        number = _number(value)
        if number is None:
            return False
        return all(
            {"gt": number > bound, "gte": number >= bound, "lt": number < bound,
             "lte": number <= bound}[name]
            for name, bound in wanted.items()
        )  # fmt: skip
    if isinstance(wanted, bool) or isinstance(value, bool):
        return isinstance(wanted, bool) and isinstance(value, bool) and wanted == value
    if isinstance(wanted, int | float):
        number = _number(value)
        return number is not None and number == wanted
    return isinstance(value, str) and value == wanted


def _number(value: Any) -> float | None:
    """A finite number, or numeric text; None for anything else (true/false included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None
