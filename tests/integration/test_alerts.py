"""A node's own alerts, end to end inside one process: a real condition (the embedded vector
store held by another opener, so qdrant_manager cannot start) fires alerts that are mailed
through the outbox to the capture sink, reminded, escalated, and resolved once it clears."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from email_sender.alerts.monitor import AlertMonitor
from email_sender.managers import State
from email_sender.service import Service, build_service
from email_sender.settings import Settings
from email_sender.vectors.edge import EdgeVectorStore
from tests.conftest import make_settings, wait_for

ONCALL = "oncall@example.org"
DEVOPS = "devops@example.org"


def alert_settings(tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    return make_settings(
        tmp_path, database_url,
        **{
            "embedder.provider": "hashing",
            "alerts.to": [ONCALL],
            "alerts.sender": "email-sender <alerts@example.org>",
            "alerts.interval": 0.2,
            "alerts.pending": 0,
            "alerts.resolve_after": 0.6,
            "alerts.cooldown": 1.0,
            "alerts.escalation": {"level_2": {"after": 2.5, "to": [DEVOPS]},
                                  "level_3": {"after": 600}},
            "alerts.enabled": True,
            # The test provokes the vector store's alerts only: a pytest process late in a full
            # run may hold more than 85 % of the 2 GiB default, which is not this test's concern.
            "alerts.memory_limit": 1 << 40,
            **extra,
        },
    )


def monitor_of(node: Service) -> AlertMonitor:
    [monitor] = [hook for hook in node.hooks if isinstance(hook, AlertMonitor)]
    return monitor


def subject_of(mail: Message) -> str:
    # A long subject is folded on the wire; unfolded, it may keep the fold's leading space.
    return str(mail["Subject"]).strip()


def captured(node: Service, check: str) -> list[Message]:
    """The alert mails about ``check`` the capture sink received, oldest first."""
    sink = node.get("smtp_sink")
    mails = []
    for summary in reversed(sink.messages(limit=1000)):
        raw = sink.raw(summary["message_id"])
        mail = message_from_bytes(raw, policy=default_policy)
        if f": {check} on " in subject_of(mail):
            mails.append(mail)
    return mails


def subjects(node: Service, check: str) -> list[str]:
    return [subject_of(mail) for mail in captured(node, check)]


@pytest.fixture
async def held_store(tmp_path: Path) -> AsyncIterator[EdgeVectorStore]:
    """The node's embedded vector store, opened first by someone else (as a vectors command run
    on the live data dir would)."""
    store = EdgeVectorStore(tmp_path / "data" / "qdrant")
    yield store
    await store.close()


async def test_an_alert_episode_is_mailed_reminded_escalated_and_resolved(
    tmp_path: Path, database_url: str, held_store: EdgeVectorStore
) -> None:
    settings = alert_settings(tmp_path, database_url)
    async with build_service(settings) as node:
        assert node.registry.status("qdrant_manager").state == State.FAILED
        monitor = monitor_of(node)

        # Fired: one mail per alert, through the outbox to the sink.
        await wait_for(lambda: len(subjects(node, "vector_store")) >= 1, timeout=30)
        first = captured(node, "vector_store")[0]
        assert subject_of(first) == (
            f"[email-sender] FIRING CRITICAL: vector_store on {node.node_id} (level 1)"
        )
        assert str(first["To"]) == ONCALL
        body = first.get_body(preferencelist=("plain",))
        assert body is not None
        text = body.get_content()
        assert "Now: qdrant_manager is failed" in text
        assert "Prometheus rules: EmailSenderQdrantUnavailable" in text
        # qdrant_manager failed, vector_processor blocked: the managers alert too, by its own mail.
        await wait_for(lambda: any(s.startswith("[email-sender] FIRING CRITICAL: managers on")
                                   for s in subjects(node, "managers")), timeout=30)

        # Still firing: a reminder after the cooldown, then level 2 with its recipients.
        await wait_for(lambda: any("ESCALATED TO LEVEL 2, CRITICAL" in s
                                   for s in subjects(node, "vector_store")), timeout=30)
        vector_subjects = subjects(node, "vector_store")
        assert "STILL FIRING CRITICAL: vector_store" in vector_subjects[1]
        [escalated] = [mail for mail in captured(node, "vector_store")
                       if "ESCALATED" in subject_of(mail)]
        assert "ESCALATED TO LEVEL 2, CRITICAL" in subject_of(escalated)
        assert str(escalated["To"]) == f"{ONCALL}, {DEVOPS}"

        # Cleared: the store is free, the node starts its failed managers again (as
        # POST /api/v1/managers/discovery/restart does, unless its own retry came first), and
        # each alert is resolved once.
        await held_store.close()
        restarted = await node.restart()
        assert restarted["still_failed"] == [], restarted
        assert node.registry.status("qdrant_manager").state == State.RUNNING
        await wait_for(lambda: any("RESOLVED" in s for s in subjects(node, "vector_store"))
                       and any("RESOLVED" in s for s in subjects(node, "managers")), timeout=30)
        resolved = captured(node, "vector_store")[-1]
        assert subject_of(resolved).startswith(
            f"[email-sender] RESOLVED: vector_store on {node.node_id} after "
        )
        assert subject_of(resolved).endswith("(was critical)")
        assert str(resolved["To"]) == f"{ONCALL}, {DEVOPS}"
        assert monitor.notifier.episodes == {}
        count = len(subjects(node, "vector_store"))
        rounds = monitor.rounds
        await wait_for(lambda: monitor.rounds >= rounds + 5, timeout=10)
        assert len(subjects(node, "vector_store")) == count  # nothing after the resolve

        # The mails are ordinary outbox emails: tagged, sent, each with its attempt.
        rows, _ = await node.outbox.page(tag="alert", limit=100)
        assert len(rows) == len(monitor.mailed) >= 6
        assert {row["status"] for row in rows} == {"sent"}


async def test_alert_mail_obeys_the_suppression_list(
    tmp_path: Path, database_url: str, held_store: EdgeVectorStore
) -> None:
    settings = alert_settings(tmp_path, database_url, **{"alerts.cooldown": 600,
                                                                "alerts.interval": 1.0})
    node = build_service(settings)
    async with node:
        await node.suppressions.add(ONCALL, reason="manual")
        await wait_for(lambda: len(monitor_of(node).mailed) >= 2, timeout=30)

        async def all_suppressed() -> bool:
            rows, _ = await node.outbox.page(tag="alert", limit=100)
            return bool(rows) and {row["status"] for row in rows} == {"suppressed"}

        await wait_for(all_suppressed, timeout=30)
        assert node.get("smtp_sink").messages() == []
