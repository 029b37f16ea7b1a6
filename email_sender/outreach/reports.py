"""What a sequence will do and what it did: its preview and its stats.

The preview plans the sequence's open enrolments forward with the scheduler's own planner and
rules, counting what the send log already holds, with the mean gap for the random one; it sends
nothing. It plans this sequence alone: sends of other sequences from the same sender, planned but
not made yet, can push its real times later.

The stats count from the send log and the reactions to it: per step, sent and the answers it
got (replies by intent, out-of-office, bounces, unsubscribes); per sequence, enrolments by
status, the reply rate (enrolments that replied over enrolments written to) and the median time
from a step to its reply, by the scheduler's clock.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select

from email_sender.db.schema import inbound_messages, outreach_reactions, outreach_sends
from email_sender.outreach.planner import Planner
from email_sender.outreach.scheduler import Scheduler
from email_sender.outreach.sequences import OPEN, SequenceStore

HORIZON = 60 * 86400.0
MAX_PREVIEW_ENROLMENTS = 100_000
REPLIES = ("reply", "unsubscribe")


async def preview(
    scheduler: Scheduler, store: SequenceStore, sequence_id: str, *, count: int
) -> list[dict[str, Any]]:
    """The next ``count`` sends of the sequence, with their planned times."""
    sequence = await store.get(sequence_id)
    if sequence["status"] != "active":
        return []
    now = scheduler.clock()
    delays = tuple(step["delay"] for step in sequence["steps"])
    rows = [
        row for row in await store.open_enrolments(sequence_id, limit=MAX_PREVIEW_ENROLMENTS)
        if row["next_step"] < len(delays)
    ]
    items = [
        scheduler.due_item(
            {**row, "sender": sequence["sender"]}, then=delays[row["next_step"] + 1:]
        )
        for row in rows
    ]
    emails = {row["id"]: row["email"] for row in rows}
    counters = await scheduler.counters(now, items)
    planner = Planner(scheduler.rules, scheduler.mean_gap)
    # Up to a second for the largest sequences: planned off the event loop.
    plan = await asyncio.to_thread(
        planner.plan, items, counters, start=now, until=now + HORIZON, limit=count
    )
    return [
        {"enrolment_id": send.enrolment_id, "email": emails[send.enrolment_id],
         "step": send.step, "at": send.at}
        for send in plan.sends
    ]


async def stats(store: SequenceStore, sequence_id: str) -> dict[str, Any]:
    sequence = await store.get(sequence_id)
    async with store.db.connect() as connection:
        sent: dict[int, int] = dict(
            (await connection.execute(
                select(outreach_sends.c.step, func.count())
                .where(outreach_sends.c.sequence_id == sequence_id)
                .group_by(outreach_sends.c.step)
            )).all()
        )
        written_to = (await connection.execute(
            select(func.count(func.distinct(outreach_sends.c.enrolment_id)))
            .where(outreach_sends.c.sequence_id == sequence_id)
        )).scalar_one()
        answers = (await connection.execute(
            select(
                outreach_sends.c.step, outreach_sends.c.sent_at, outreach_reactions.c.action,
                outreach_reactions.c.at, outreach_reactions.c.enrolment_id,
                func.coalesce(inbound_messages.c.label, inbound_messages.c.intent).label("intent"),
            )
            .join(inbound_messages, inbound_messages.c.email_id == outreach_sends.c.email_id)
            .join(outreach_reactions, outreach_reactions.c.inbound_id == inbound_messages.c.id)
            .where(outreach_sends.c.sequence_id == sequence_id)
            .order_by(outreach_reactions.c.at)
        )).all()
    steps: dict[int, dict[str, Any]] = {
        step["position"]: {
            "step": step["position"], "sent": sent.get(step["position"], 0),
            "replied": defaultdict(int), "out_of_office": 0, "bounced": 0, "unsubscribed": 0,
        }
        for step in sequence["steps"]
    }
    replied: dict[str, float] = {}  # enrolment -> time from its step to its first reply
    for answer in answers:
        counts = steps[answer.step]
        if answer.action in REPLIES:
            counts["replied"][answer.intent or "unclassified"] += 1
            replied.setdefault(answer.enrolment_id, answer.at - answer.sent_at)
        if answer.action == "pause":
            counts["out_of_office"] += 1
        elif answer.action == "bounce":
            counts["bounced"] += 1
        elif answer.action in ("unsubscribe", "complaint"):
            counts["unsubscribed"] += 1
    enrolled = sequence["enrolments"]
    return {
        "sequence_id": sequence_id,
        "enrolled": sum(enrolled.values()),
        "enrolments": enrolled,
        "open": sum(enrolled.get(status, 0) for status in OPEN),
        "written_to": written_to,
        "replied": len(replied),
        "reply_rate": round(len(replied) / written_to, 4) if written_to else None,
        "median_reply_seconds": statistics.median(replied.values()) if replied else None,
        "steps": [
            {**counts, "replied": dict(counts["replied"])}
            for _, counts in sorted(steps.items())
        ],
    }

