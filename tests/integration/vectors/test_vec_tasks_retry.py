"""A task the store keeps refusing is retried with back-off a bounded number of times, then marked
``failed`` with its error; the other tasks of its batch are indexed meanwhile.

Real parts: SQLite and PostgreSQL, the Qdrant Edge store (behind the FlakyStore wrapper, which
refuses chosen ids the way a store refuses a point), the hashing embedder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from email_sender.db.schema import tasks
from email_sender.service import Service, build_service
from tests.conftest import make_settings, wait_for
from tests.support.vectors import fast_processor, flaky_store, install_flaky_store

MAX_ATTEMPTS = 3


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url, **{"embedder.provider": "hashing"})
    service = build_service(settings)
    install_flaky_store(service)
    fast_processor(service)
    assert service.search is not None
    options = service.search.tasks.options
    options.max_attempts = MAX_ATTEMPTS
    options.backoff_base = 0.05
    options.backoff_max = 0.2
    async with service:
        yield service


async def state_of(node: Service, task_id: str) -> str:
    async with node.db.connect() as connection:
        return str((await connection.execute(
            select(tasks.c.vector_state).where(tasks.c.id == task_id))).scalar_one())


async def test_a_refused_task_fails_after_bounded_attempts_with_its_error(node: Service) -> None:
    assert node.search is not None
    service = node.search.tasks
    store = flaky_store(node)
    store.down = True  # both tasks stay pending until the store answers
    bad = await service.create("Call the promoter about the rider")
    good = await service.create("Renew the venue insurance policy")
    assert (bad["vector_state"], good["vector_state"]) == ("pending", "pending")

    store.poison.add(bad["id"])
    store.down = False
    await wait_for(lambda: _is(node, bad["id"], "failed"), timeout=30)
    await wait_for(lambda: _is(node, good["id"], "indexed"), timeout=30)

    assert service.counters["failed"] == 1
    assert service.counters["retried"] == MAX_ATTEMPTS - 1
    assert f"refused ['{bad['id']}']" in service.errors[bad["id"]]
    # Failed is final: no more attempts, however long the processor keeps running.
    await asyncio.sleep(1.0)
    assert service.counters["retried"] == MAX_ATTEMPTS - 1
    assert service.counters["failed"] == 1


async def test_a_task_refused_at_create_is_stored_pending_and_retried(node: Service) -> None:
    """Create answers with the stored task rather than an error; the processor takes over."""
    assert node.search is not None
    service = node.search.tasks
    store = flaky_store(node)
    original = store.upsert
    refuse_once = {"left": 1}

    async def refusing_upsert(name, points, wait=True):  # type: ignore[no-untyped-def]
        if refuse_once["left"]:
            refuse_once["left"] -= 1
            store.poison.add(points[0].id)
            try:
                return await original(name, points, wait)
            finally:
                store.poison.discard(points[0].id)
        return await original(name, points, wait)

    store.upsert = refusing_upsert  # type: ignore[method-assign]
    created = await service.create("Book the hotel for the band")
    assert created["vector_state"] == "pending"
    await wait_for(lambda: _is(node, created["id"], "indexed"), timeout=30)


async def _is(node: Service, task_id: str, state: str) -> bool:
    return await state_of(node, task_id) == state
