"""Errors as the client and the code above the store see them.

* A taken unique key is DuplicateKey; a foreign key or NOT NULL refusal is a Conflict (409), not
  a 503 that tells the client to retry the same thing (SQLite and PostgreSQL).
* EventBusError and DeliveryError reach the client as 503 with a code naming what is down.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from email_sender import errors
from email_sender.api.errors import install
from email_sender.db.schema import attempts, rate_buckets
from email_sender.db.schema import settings as settings_table
from email_sender.service import Service


async def test_unique_violation_is_duplicate_key_other_constraints_are_conflict(
    service: Service,
) -> None:
    row = {"key": "probe", "value": {"a": 1}, "updated_at": time.time()}
    async with service.db.transaction() as connection:
        await connection.execute(insert(settings_table).values(**row))
    with pytest.raises(errors.DuplicateKey):
        async with service.db.transaction() as connection:
            await connection.execute(insert(settings_table).values(**row))

    orphan = {"email_id": "no-such-email", "n": 1, "outcome": "sent", "started_at": 1.0,
              "duration_ms": 1.0}
    with pytest.raises(errors.Conflict) as foreign_key:
        async with service.db.transaction() as connection:
            await connection.execute(insert(attempts).values(**orphan))
    assert not isinstance(foreign_key.value, errors.StoreError)
    assert "constraint" in foreign_key.value.message

    with pytest.raises(errors.Conflict):
        async with service.db.transaction() as connection:
            await connection.execute(
                insert(rate_buckets).values(relay="r", tokens=None, updated_at=1.0)
            )


@pytest.fixture
async def failing_api() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install(app)

    @app.get("/bus")
    async def bus() -> None:
        raise errors.EventBusError("cannot reach Redis at redis://***@127.0.0.1:1/0")

    @app.get("/relay")
    async def relay() -> None:
        raise errors.TransientDeliveryError("no relay reachable", relay="127.0.0.1:1")

    @app.get("/constraint")
    async def constraint() -> None:
        raise errors.Conflict("the database refused the change (constraint): ...")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize(
    ("path", "status", "code", "cause"),
    [
        ("/bus", 503, "event_bus_unavailable", "event_bus_error"),
        ("/relay", 503, "relay_unavailable", "delivery_deferred"),
        ("/constraint", 409, "conflict", None),
    ],
)
async def test_bus_and_relay_failures_are_503_with_a_clear_code(
    failing_api: httpx.AsyncClient, path: str, status: int, code: str, cause: str | None
) -> None:
    answer = await failing_api.get(path)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["details"].get("cause") == cause
    assert ("retry-after" in answer.headers) == (status == 503)
