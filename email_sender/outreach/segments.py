"""Segments: named, saved filters over contacts, and the contacts each one selects.

A segment keeps its filter, not its members: who matches is decided when asked, so a contact
that changes status or tags moves in or out at once. Matching contacts are read by keyset
batches of ``SCAN_BATCH`` rows (tags and attributes are then checked row by row), so even a
large contact table is never loaded in one go.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, update

from email_sender.db.cursors import decode_cursor, page_of
from email_sender.db.engine import Database
from email_sender.db.schema import contacts, segments
from email_sender.errors import Conflict, DuplicateKey, NotFound, ValidationError
from email_sender.outreach.lifecycle import Lifecycle
from email_sender.outreach.segment_filter import SegmentFilter, parse_filter

SCAN_BATCH = 500
MAX_NAME = 200

FilterInput = SegmentFilter | Mapping[str, Any]
# An alias: inside SegmentStore, ``list`` names its method.
Rows = list[dict[str, Any]]
Ids = list[str]


class SegmentStore:
    def __init__(self, db: Database, lifecycle: Lifecycle) -> None:
        self.db = db
        self.lifecycle = lifecycle

    async def create(self, name: str, filter: FilterInput) -> dict[str, Any]:
        """Save a segment; Conflict when the name is taken, ValidationError naming the field."""
        name = _checked_name(name)
        checked = self._checked(filter)
        now = time.time()
        row = {"id": str(uuid.uuid4()), "name": name, "filter": checked.stored(),
               "created_at": now, "updated_at": now}  # fmt: skip
        try:
            async with self.db.transaction() as connection:
                await connection.execute(insert(segments).values(**row))
        except DuplicateKey as exc:
            raise Conflict(f"a segment is named {name!r} already", name=name) from exc
        return row

    async def get(self, segment_id: str) -> dict[str, Any]:
        async with self.db.connect() as connection:
            found = (
                await connection.execute(select(segments).where(segments.c.id == segment_id))
            ).first()
        if found is None:
            raise NotFound(f"no segment with id {segment_id}", id=segment_id)
        return dict(found._mapping)

    async def list(self) -> Rows:
        """Every segment, by name (operators keep tens of them, not thousands)."""
        async with self.db.connect() as connection:
            rows = await connection.execute(select(segments).order_by(segments.c.name))
            return [dict(row._mapping) for row in rows]

    async def update(
        self,
        segment_id: str,
        name: str | None = None,
        filter: FilterInput | None = None,
    ) -> dict[str, Any]:
        """Rename and/or replace the filter (the whole filter: absent fields are dropped)."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _checked_name(name)
        if filter is not None:
            values["filter"] = self._checked(filter).stored()
        if values:
            try:
                async with self.db.transaction() as connection:
                    result = await connection.execute(
                        update(segments)
                        .where(segments.c.id == segment_id)
                        .values(**values, updated_at=time.time())
                    )
            except DuplicateKey as exc:
                taken = values["name"]
                raise Conflict(f"a segment is named {taken!r} already", name=taken) from exc
            if not result.rowcount:
                raise NotFound(f"no segment with id {segment_id}", id=segment_id)
        return await self.get(segment_id)

    async def delete(self, segment_id: str) -> None:
        """Forget the segment (its contacts stay)."""
        async with self.db.transaction() as connection:
            result = await connection.execute(delete(segments).where(segments.c.id == segment_id))
        if not result.rowcount:
            raise NotFound(f"no segment with id {segment_id}", id=segment_id)

    async def page_contacts(
        self, segment_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[Rows, str | None]:
        """The matching contacts, newest first, paged like the contact list."""
        selected = await self.filter_of(segment_id)
        after = decode_cursor(cursor) if cursor else None
        rows = await self._scan(
            selected, [contacts], want=limit + 1, newest_first=True, after=after
        )
        return page_of(rows, limit)

    async def contact_ids(self, segment_id: str, *, limit: int = 100_000) -> Ids:
        """The ids of the matching contacts, oldest created first, at most ``limit``."""
        selected = await self.filter_of(segment_id)
        columns = [contacts.c.id, contacts.c.created_at]
        if selected.checks_rows:
            columns += [contacts.c.tags, contacts.c.attributes]
        rows = await self._scan(selected, columns, want=limit, newest_first=False, after=None)
        return [row["id"] for row in rows]

    async def filter_of(self, segment_id: str) -> SegmentFilter:
        """The segment's filter (NotFound for an unknown segment)."""
        return SegmentFilter.model_validate((await self.get(segment_id))["filter"])

    def _checked(self, filter: FilterInput) -> SegmentFilter:
        checked = parse_filter(filter)
        for status in checked.statuses or ():
            self.lifecycle.check_known(status, field="filter.statuses")
        return checked

    async def _scan(
        self,
        selected: SegmentFilter,
        columns: Sequence[Any],
        *,
        want: int,
        newest_first: bool,
        after: tuple[float, str] | None,
    ) -> Rows:
        """Up to ``want`` matching rows in created order, from after the ``after`` position."""
        conditions = selected.conditions()
        batch = SCAN_BATCH if selected.checks_rows else min(want, SCAN_BATCH)
        order = (
            (contacts.c.created_at.desc(), contacts.c.id.desc()) if newest_first
            else (contacts.c.created_at, contacts.c.id)
        )
        found: Rows = []
        while len(found) < want:
            query = select(*columns).where(*conditions)
            if after is not None:
                query = query.where(_beyond(after, newest_first))
            async with self.db.connect() as connection:
                rows = [
                    dict(row._mapping)
                    for row in await connection.execute(query.order_by(*order).limit(batch))
                ]
            found.extend(
                row for row in rows
                if not selected.checks_rows or selected.matches(row["tags"], row["attributes"])
            )
            if len(rows) < batch:
                break
            after = (rows[-1]["created_at"], rows[-1]["id"])
        return found[:want]


def _beyond(position: tuple[float, str], newest_first: bool) -> ColumnElement[bool]:
    created_at, last_id = position
    if newest_first:
        return or_(
            contacts.c.created_at < created_at,
            and_(contacts.c.created_at == created_at, contacts.c.id < last_id),
        )
    return or_(
        contacts.c.created_at > created_at,
        and_(contacts.c.created_at == created_at, contacts.c.id > last_id),
    )


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise ValidationError("name", f"1 to {MAX_NAME} characters")
    if any(not char.isprintable() for char in name):
        raise ValidationError("name", "holds a control character")
    return name
