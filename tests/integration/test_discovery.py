"""Two nodes sharing one PostgreSQL database see each other; a silent node is marked lost."""

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from email_sender.db.schema import nodes
from email_sender.service import Service
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres


async def test_two_nodes_discover_each_other_and_stale_ones_are_lost(
    tmp_path: Path, pg_url: str
) -> None:
    first = Service(make_settings(tmp_path / "a", pg_url, **{"node.stale_after": 2.0}))
    second = Service(make_settings(tmp_path / "b", pg_url, **{"node.stale_after": 2.0}),
                     role="delivery")
    await first.start()
    await second.start()
    try:
        await asyncio.sleep(0.3)  # a heartbeat or two
        seen = await first.discovery()
        by_id = {node["node_id"]: node for node in seen["nodes"]}
        assert set(by_id) == {first.node_id, second.node_id}
        assert seen["live"] == 2
        assert by_id[second.node_id]["role"] == "delivery"
        assert {m["name"] for m in by_id[second.node_id]["managers"]} >= {"database", "event_bus"}

        # The second node goes silent (as if its host died): it is marked lost, then dropped.
        second._heartbeat.cancel()  # type: ignore[union-attr]
        async with first.db.transaction() as connection:
            await connection.execute(
                update(nodes).where(nodes.c.node_id == second.node_id)
                .values(last_seen=time.time() - 60)
            )
        seen = await first.discovery()
        lost = {node["node_id"]: node["status"] for node in seen["nodes"]}
        assert lost[second.node_id] == "lost"
        assert seen["live"] == 1
        result = await first.restart()
        assert result["dropped_nodes"] == 1
        assert [n["node_id"] for n in (await first.discovery())["nodes"]] == [first.node_id]
    finally:
        await second.stop()
        await first.stop()


async def test_a_stopped_node_says_so(tmp_path: Path, pg_url: str) -> None:
    first = Service(make_settings(tmp_path / "a", pg_url))
    second = Service(make_settings(tmp_path / "b", pg_url))
    await first.start()
    await second.start()
    await second.stop()
    try:
        rows = {node["node_id"]: node["status"] for node in (await first.discovery())["nodes"]}
        assert rows[second.node_id] == "stopped"
    finally:
        await first.stop()
