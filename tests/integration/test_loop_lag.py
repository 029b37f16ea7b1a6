"""The event-loop lag metric: it sees a stalled loop, and stays low while heavy work runs.

Heavy work here is what an operator or a hostile client can start on a live node: a template
that never ends, a backup and a vector reindex, all at once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from email_sender import metrics
from email_sender.api.app import create_app, create_metrics_app
from email_sender.looplag import LoopLagMonitor
from email_sender.ops import backup as backups
from email_sender.service import Service, build_service
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.embedders import HashingEmbedder
from email_sender.vectors.reindex import reindex
from tests.conftest import make_settings, wait_for

LAG_LIMIT = 0.1
NESTED_LOOPS = (
    "{% for a in range(50000) %}{% for b in range(50000) %}x{% endfor %}{% endfor %}"
)


def lag_counts() -> tuple[float, float]:
    """(observations, observations over LAG_LIMIT) of the lag histogram so far."""
    total = within = 0.0
    for family in metrics.event_loop_lag.collect():
        for sample in family.samples:
            if sample.name.endswith("_count"):
                total = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == LAG_LIMIT:
                within = sample.value
    return total, total - within


async def test_a_stalled_loop_shows_as_lag() -> None:
    monitor = LoopLagMonitor(interval=0.02)
    before_total, before_over = lag_counts()
    await monitor.start()
    try:
        await wait_for(lambda: monitor.samples >= 2, timeout=10)
        seen = monitor.samples
        time.sleep(0.3)  # holds the loop, as a blocking call in a coroutine would
        await wait_for(lambda: monitor.samples > seen, timeout=10)
    finally:
        started = time.monotonic()
        await monitor.stop()
        assert time.monotonic() - started < 1.0
    total, over = lag_counts()
    assert monitor.worst >= 0.2
    assert over - before_over >= 1
    assert total - before_total >= monitor.samples


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    service = build_service(make_settings(tmp_path, database_url), role="api")
    async with service:
        yield service


def vector_folder(tmp_path: Path) -> Path:
    """Where the test's Qdrant Edge stores live: in memory (tmpfs) when the system has it.

    The Qdrant Edge binding keeps the GIL while it writes and syncs its files (60-100 ms per
    payload index on a busy disk, 3 ms on tmpfs), which stalls the loop from any thread; that
    is the binding's limit, not this service's, and it is kept out of this measurement.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="looplag-", dir=shm))
    return tmp_path


async def test_every_node_exports_its_loop_lag(node: Service) -> None:
    before, _ = lag_counts()
    await wait_for(lambda: lag_counts()[0] >= before + 3, timeout=10)
    transport = httpx.ASGITransport(app=create_metrics_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        scraped = (await http.get(node.settings.metrics.path)).text
    assert 'email_sender_event_loop_lag_seconds_bucket{le="0.1"}' in scraped


async def fill(service: Service, count: int) -> None:
    items: list[dict[str, Any]] = [
        {"from": "ops@example.com", "to": [f"guest{n}@example.org"],
         "subject": f"Booking {n}", "text": f"Room {n} is confirmed for {n % 7 + 1} nights."}
        for n in range(count)
    ]
    for start in range(0, count, 100):
        results = await service.intake.accept_batch(items[start:start + 100])
        assert all("id" in result for result in results)


async def test_lag_stays_low_during_a_bad_template_a_backup_and_a_reindex(
    node: Service, tmp_path: Path
) -> None:
    await fill(node, 600)
    embedder = HashingEmbedder(dimension=64)
    collections = node.settings.collections
    stores = vector_folder(tmp_path)
    backed_up = EdgeVectorStore(stores / "backed-up")
    rebuilt = EdgeVectorStore(stores / "rebuilt")
    monitor = LoopLagMonitor(interval=0.01)
    try:
        await reindex(node.db, backed_up, embedder, collections, collections.emails)
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            # A new app builds each route on its first request (0.1-0.3 s on the loop); that
            # one-off cost is not what this test measures.
            warm_up = await http.post("/api/v1/emails", json={
                "from": "ops@example.com", "to": ["ann@example.org"],
                "template": {"subject": "Hi", "text": "{{ 1 }}"},
            })
            assert warm_up.status_code == 202
            before_total, before_over = lag_counts()
            await monitor.start()
            template = http.post("/api/v1/emails", json={
                "from": "ops@example.com", "to": ["ann@example.org"],
                "template": {"subject": "Hi", "text": NESTED_LOOPS},
            })
            answer, folder, result = await asyncio.gather(
                template,
                backups.create_backup(node.settings, node.db, backed_up, dest=tmp_path / "b"),
                reindex(node.db, rebuilt, embedder, collections, collections.emails,
                        batch_size=50),
            )
            await monitor.stop()
    finally:
        await monitor.stop()
        await backed_up.close()
        await rebuilt.close()
        if stores != tmp_path:
            shutil.rmtree(stores, ignore_errors=True)

    assert answer.status_code == 422
    assert backups.read_manifest(folder)["collections"]["emails"]["points"] == 600
    assert result.points == 601  # the 600 and the warm-up email
    total, over = lag_counts()
    assert monitor.samples >= 10
    # The node's own monitor records into the same histogram: none of its samples is over either.
    assert total - before_total > monitor.samples
    assert monitor.worst < LAG_LIMIT, f"worst lag {monitor.worst * 1000:.0f} ms"
    assert over - before_over == 0
