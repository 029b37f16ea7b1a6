"""Contacts imported from CSV or JSON lines, with a report for every row.

Reading and checking the rows is CPU work on text that anyone may send, so it runs in a worker
thread; storing goes by batches of ``BATCH_ROWS``, each one transaction. A row is ``created``,
``exists`` (the address is a contact already, or came earlier in the same file) or ``error``
with each field and reason; a bad row changes nothing, and the good rows around it are kept.

CSV: a header line names the columns: ``email`` (required), ``name``, ``organisation``,
``city``, ``region``, ``country``, ``timezone``, ``language``, ``status``, ``tags`` (separated
by ``;`` or ``|``), ``consent_basis``, ``consent_source``, ``notes``; any other column goes to
``attributes``. JSON lines: one object per line with the fields of ``POST /api/v1/contacts``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from email_sender.errors import Conflict, DuplicateKey, ValidationError
from email_sender.outreach.contacts import Change, ContactStore
from email_sender.outreach.fields import NewContact

Format = Literal["csv", "jsonl"]

BATCH_ROWS = 500
MAX_ROWS = 100_000
MAX_ERRORS_PER_ROW = 10
KNOWN_COLUMNS = frozenset(
    {"email", "name", "organisation", "city", "region", "country", "timezone", "language",
     "status", "notes"}
)  # fmt: skip
TAG_SEPARATORS = (";", "|")


@dataclass
class RowResult:
    row: int  # 1 is the first row of data (after a CSV header)
    status: str  # created | exists | error
    email: str | None = None
    id: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ImportReport:
    rows: list[RowResult]

    def counts(self) -> dict[str, int]:
        counted = {"created": 0, "exists": 0, "error": 0}
        for result in self.rows:
            counted[result.status] += 1
        return counted


def read_rows(body: bytes, fmt: Format) -> list[RowResult | NewContact]:
    """Every row checked: a NewContact, or a RowResult with its errors (no I/O; in a thread)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError("body", f"not UTF-8 text (byte {exc.start})") from exc
    raw_rows = _csv_rows(text) if fmt == "csv" else _json_rows(text)
    checked: list[RowResult | NewContact] = []
    for number, raw in enumerate(raw_rows, start=1):
        if number > MAX_ROWS:
            raise ValidationError("body", f"over {MAX_ROWS} rows: split the file")
        if isinstance(raw, str):
            checked.append(RowResult(number, "error", errors=[{"field": "row", "reason": raw}]))
            continue
        try:
            checked.append(NewContact.model_validate(raw))
        except pydantic.ValidationError as exc:
            email = raw.get("email") if isinstance(raw.get("email"), str) else None
            checked.append(RowResult(number, "error", email=email, errors=_errors(exc)))
    return checked


async def import_contacts(
    store: ContactStore, body: bytes, fmt: Format, change: Change
) -> ImportReport:
    checked = await asyncio.to_thread(read_rows, body, fmt)
    results: list[RowResult] = []
    seen: set[str] = set()
    pending: list[tuple[int, NewContact]] = []
    for number, item in enumerate(checked, start=1):
        if isinstance(item, RowResult):
            results.append(item)
            continue
        try:
            if item.status is not None:
                store.lifecycle.check_known(item.status)
        except ValidationError as exc:
            results.append(RowResult(number, "error", item.email,
                                     errors=[{"field": "status", "reason": exc.reason}]))
            continue
        if item.email in seen:
            results.append(RowResult(number, "exists", item.email))
            continue
        seen.add(item.email)
        pending.append((number, item))
        if len(pending) >= BATCH_ROWS:
            results.extend(await _store_batch(store, pending, change))
            pending = []
    if pending:
        results.extend(await _store_batch(store, pending, change))
    results.sort(key=lambda result: result.row)
    return ImportReport(results)


async def _store_batch(
    store: ContactStore, batch: list[tuple[int, NewContact]], change: Change
) -> list[RowResult]:
    taken = await store.existing([item.email for _, item in batch])
    results = [RowResult(number, "exists", item.email) for number, item in batch
               if item.email in taken]
    fresh = [(number, item) for number, item in batch if item.email not in taken]
    if not fresh:
        return results
    try:
        ids = await store.create_many([item for _, item in fresh], change)
    except DuplicateKey:
        # Taken meanwhile by another writer: one at a time, so only that row is "exists".
        for number, item in fresh:
            try:
                created = await store.create(item, change)
            except Conflict:
                results.append(RowResult(number, "exists", item.email))
            else:
                results.append(RowResult(number, "created", item.email, created["id"]))
        return results
    results.extend(RowResult(number, "created", item.email, ids[item.email])
                   for number, item in fresh)
    return results


def _csv_rows(text: str) -> list[dict[str, Any] | str]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationError("body", "empty: a CSV file starts with a header line") from None
    except csv.Error as exc:
        raise ValidationError("body", f"the header line is not CSV: {exc}") from exc
    columns = [name.strip().lower() for name in header]
    if "email" not in columns:
        raise ValidationError("body", "the CSV header has no 'email' column")
    if len(set(columns)) != len(columns):
        raise ValidationError("body", "the CSV header names a column twice")
    rows: list[dict[str, Any] | str] = []
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append(f"not CSV: {exc}")
            continue
        if not any(value.strip() for value in values):
            continue  # a blank line
        if len(values) != len(columns):
            rows.append(f"{len(values)} values for {len(columns)} columns")
            continue
        rows.append(_contact_from_columns(dict(zip(columns, values, strict=True))))
    return rows


def _contact_from_columns(values: dict[str, str]) -> dict[str, Any]:
    contact: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    for name, value in values.items():
        value = value.strip()
        if not value:
            continue
        if name in KNOWN_COLUMNS:
            contact[name] = value
        elif name == "tags":
            for separator in TAG_SEPARATORS:
                value = value.replace(separator, ",")
            contact["tags"] = [tag.strip() for tag in value.split(",") if tag.strip()]
        elif name == "consent_basis":
            contact.setdefault("consent", {})["basis"] = value
        elif name == "consent_source":
            contact.setdefault("consent", {})["source"] = value
        else:
            attributes[name] = value
    if attributes:
        contact["attributes"] = attributes
    return contact


def _json_rows(text: str) -> list[dict[str, Any] | str]:
    rows: list[dict[str, Any] | str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            rows.append(f"not JSON: {exc}")
            continue
        rows.append(value if isinstance(value, dict) else "not a JSON object")
    return rows


def _errors(exc: pydantic.ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "row",
            "reason": error["msg"].removeprefix("Value error, "),
        }
        for error in exc.errors()[:MAX_ERRORS_PER_ROW]
    ]
