"""Outreach benchmark: planning a large campaign, and what the scheduler adds to each send.

All figures come from one run on this machine.

- plan: 100,000 enrolments over 50 sender identities and 5,000 recipient domains in five time
  zones, planned over one day with windows, the random gap and every cap: wall time and peak
  traced memory. Target: under 10 s. Peer: the same rules checked the obvious way, every minute
  of the day over every due step, on a sample both planners plan (its size is printed); the
  sends each planned are printed side by side.
- per send: N contacts enrolled in a one-step sequence on SQLite; the scheduler's ticks (plan,
  render, accept into the outbox, record) are timed, then the delivery workers drain those
  emails to a local SMTP sink. Peer: the same emails through the intake's batch path (render
  and queue, 100 a transaction), so the scheduler's own share is (ticks - batch intake) / drain.
  Target: under 5 % of the drain.

Usage: python benchmarks/outreach.py [--enrolments 100000] [--sends 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).parent))
from _common import ratio_line, row, smtp_sink, write_result

from email_sender.log import setup_logging
from email_sender.outreach.contacts import Change
from email_sender.outreach.fields import NewContact
from email_sender.outreach.planner import Counters, Due, Planner
from email_sender.outreach.rules import Rules
from email_sender.outreach.steps import SequenceIn
from email_sender.service import build_service
from email_sender.settings import OutreachSettings, RelaySettings, load_settings

ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/London", "America/Chicago")
SENDERS, DOMAINS = 50, 5000
CAPS = {"sender_daily": 500, "domain_hourly": 10, "domain_daily": 40}
MONDAY = datetime(2026, 12, 7, tzinfo=UTC).timestamp()
DAY = 86400.0
ALWAYS = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


# --- plan --------------------------------------------------------------------------------------


def campaign(count: int, seed: int = 7) -> list[Due]:
    rng = random.Random(seed)
    zones = [ZoneInfo(name) for name in ZONES]
    return [
        Due(f"e{index}", f"sender{index % SENDERS}@tour.example",
            f"venue{rng.randrange(DOMAINS)}.example", zones[index % len(zones)], MONDAY, 0)
        for index in range(count)
    ]


def plan_ours(items: list[Due], rules: Rules) -> tuple[float, int, float]:
    """Seconds, sends, peak MiB (traced in a second run, so tracing does not slow the first)."""
    gap = random.Random(1)
    started = time.perf_counter()
    sends = len(Planner(rules, lambda: gap.uniform(300, 900)).plan(
        items, Counters(), start=MONDAY, until=MONDAY + DAY).sends)
    elapsed = time.perf_counter() - started
    gap = random.Random(1)
    tracemalloc.start()
    Planner(rules, lambda: gap.uniform(300, 900)).plan(
        [Due(item.enrolment_id, item.sender, item.domain, item.tz, item.at, 0)
         for item in items],
        Counters(), start=MONDAY, until=MONDAY + DAY)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return elapsed, sends, peak


def plan_by_minute(items: list[Due], rules: Rules) -> tuple[float, int]:
    """The same rules, checked every minute over every step still waiting, in order."""
    gap = random.Random(1)
    counters = Counters()
    free: dict[str, float] = {}
    waiting = list(items)
    sends = 0
    started = time.perf_counter()
    for minute in range(int(DAY // 60)):
        now = MONDAY + minute * 60
        day, _ = rules.calendar.day(now)
        hour, _ = rules.calendar.hour(now)
        left = []
        for item in waiting:
            limit = rules.caps.sender_limit(item.sender, day, None)
            if (free.get(item.sender, 0.0) > now
                    or counters.sender_day[item.sender, day] >= limit
                    or not rules.windows.is_open(now, item.tz)
                    or counters.domain_hour[item.domain, hour] >= (rules.caps.domain_hourly or 0)
                    or counters.domain_day[item.domain, day] >= (rules.caps.domain_daily or 0)):
                left.append(item)
                continue
            counters.sender_day[item.sender, day] += 1
            counters.domain_hour[item.domain, hour] += 1
            counters.domain_day[item.domain, day] += 1
            free[item.sender] = now + gap.uniform(300, 900)
            sends += 1
        waiting = left
    return time.perf_counter() - started, sends


# --- per send ----------------------------------------------------------------------------------


async def scheduler_against_drain(count: int, port: int, work: Path) -> dict[str, float]:
    settings = load_settings(data_dir=work / "sched")
    settings.smtp.relays = [RelaySettings(url=f"smtp://127.0.0.1:{port}", tls="none",
                                          max_connections=4)]
    settings.delivery.workers = 4
    settings.delivery.batch_size = 100
    settings.delivery.poll_interval = 0.05
    outreach = settings.outreach
    outreach.scheduling = False
    outreach.unsubscribe_secret = "a-benchmark-secret"  # type: ignore[assignment]
    outreach.unsubscribe_url = "https://mail.tour.example/u/"
    outreach.windows = ALWAYS
    outreach.gap.min = outreach.gap.max = outreach.gap.contact_min = 0.0
    outreach.caps.sender_daily = 10 * count
    outreach.caps.domain_hourly = outreach.caps.domain_daily = None
    setup_logging(level="WARNING", log_dir=settings.log_dir, stderr=False)
    service = build_service(settings, role="delivery")
    await service.db.start()
    try:
        news = [NewContact(email=f"venue{index}@salle{index % 97}.example", name=f"Salle {index}")
                for index in range(count)]
        ids = list((await service.contacts.create_many(news, Change("import"))).values())
        step = {"subject": "Une date pour {{ name }} ?", "text": "Bonjour {{ first_name }},\n"
                "une date à {{ city }} en mars ?"}
        sequence = await service.sequences.create(SequenceIn.model_validate(
            {"name": "bench", "sender": "Booking <booking@tour.example>", "steps": [step]}))
        await service.sequences.enrol(sequence["id"], ids, now=time.time())
        ticks = 0
        started = time.perf_counter()
        while (await service.scheduler.tick()).sent:
            ticks += 1
        scheduled = time.perf_counter() - started
        # The peer: the same emails through the intake's batch path, 100 at a time as the
        # scheduler commits them: the least any sender pays to make and queue them.
        started = time.perf_counter()
        for first in range(0, count, 100):
            results = await service.intake.accept_batch([
                {"from": "Booking <booking@tour.example>", "to": [news[index].email],
                 "template": step, "tags": ["peer"], "dedupe": False,
                 "variables": {"name": f"Salle {index}", "first_name": "Salle", "city": ""}}
                for index in range(first, min(count, first + 100))
            ])
            assert all("id" in result for result in results), results[:1]
        intake = time.perf_counter() - started
    finally:
        await service.db.stop()
    started = time.perf_counter()
    await service.start()
    try:
        while (await service.outbox.counts_by_status()).get("sent", 0) < 2 * count:
            await asyncio.sleep(0.02)
        drained = time.perf_counter() - started
        sent = (await service.outbox.counts_by_status()).get("sent", 0)
    finally:
        await service.stop()
    return {"sends": count, "ticks": ticks, "delivered": sent, "scheduler_s": scheduled,
            "intake_s": intake, "drain_s": drained / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolments", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=10_000,
                        help="enrolments both planners plan, for the side-by-side")
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="10,000 enrolments, a sample of 2,000 and 500 sends")
    args = parser.parse_args()
    if args.quick:
        args.enrolments, args.sample, args.sends = 10_000, 2000, 500
    rules = Rules.from_settings(OutreachSettings.model_validate({"caps": CAPS}))

    plan_ours(campaign(1000), rules)  # warm-up: zone data, code paths
    plan_by_minute(campaign(200), rules)
    elapsed, sends, peak = plan_ours(campaign(args.enrolments), rules)
    sample = campaign(args.sample)
    ours_sample, ours_sends = plan_ours(sample, rules)[:2]
    naive_sample, naive_sends = plan_by_minute(campaign(args.sample), rules)
    with tempfile.TemporaryDirectory() as work, smtp_sink() as port:
        per_send = asyncio.run(scheduler_against_drain(args.sends, port, Path(work)))
    overhead = (per_send["scheduler_s"] - per_send["intake_s"]) / per_send["drain_s"]
    figures: dict[str, Any] = {
        "plan_enrolments": args.enrolments, "plan_seconds": elapsed, "plan_sends": sends,
        "plan_peak_mib": peak, "sample": args.sample, "sample_ours_seconds": ours_sample,
        "sample_ours_sends": ours_sends, "sample_by_minute_seconds": naive_sample,
        "sample_by_minute_sends": naive_sends, **per_send, "scheduler_overhead": overhead,
    }
    write_result("outreach", figures, [
        row(f"plan one day, {args.enrolments:,} enrolments", elapsed, "s", target="< 10 s",
            met=elapsed < 10),
        row(f"plan {args.sample:,} enrolments", args.sample / ours_sample, "enrolments/s",
            peer="every minute, every step", peer_value=args.sample / naive_sample),
        row("scheduler's own share of the drain", overhead * 100, "%", target="< 5 %",
            met=overhead < 0.05),
    ])
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"plan one day: {args.enrolments} enrolments, {SENDERS} senders, {DOMAINS} domains: "
          f"{elapsed:.2f} s, {sends} sends, peak {peak:.0f} MiB traced  "
          f"target < 10 s: {'met' if elapsed < 10 else 'NOT met'}")
    print(ratio_line(f"plan {args.sample} (ours)", args.sample / ours_sample,
                     "every minute, every step", args.sample / naive_sample, "enrol/s"))
    print(f"  sends planned: ours {ours_sends}, every-minute {naive_sends}")
    sends_n = per_send["sends"]
    print(f"per send ({sends_n} sends, {per_send['ticks']} ticks, "
          f"{per_send['delivered']} delivered incl. the peer's): "
          f"scheduler {per_send['scheduler_s'] / sends_n * 1e3:.2f} ms, "
          f"batch intake alone {per_send['intake_s'] / sends_n * 1e3:.2f} ms, "
          f"drain {per_send['drain_s'] / sends_n * 1e3:.2f} ms")
    print(f"  scheduler's own share of the drain: {overhead:.1%}  "
          f"target < 5 %: {'met' if overhead < 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
