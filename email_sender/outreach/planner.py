"""When each due step may go: the sending rules applied forward in time, in memory.

The planner is given the steps that are due (:class:`Due`), what has been sent already
(:class:`Counters`, from the send log) and a span of time; it answers the sends that fit in it
(:class:`Planned`), in time order, and for the steps it looked at but could not place, the
earliest time worth looking again (``deferred``).

One planner serves three callers: the scheduler plans the span ``[now, now]`` and sends what it
answers; the preview plans days ahead without sending; the benchmark plans a full day of a
large campaign.

How it stays fast: every sender has its own queue of due steps, and a queue of senders orders
them by the first time each may send (its gap over, its day's cap not reached). A step is looked
at only when its sender may send; a step that cannot go then (its contact's window is closed,
its domain has had enough this hour) moves to the time that changes it, never back.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from email_sender.outreach.rules import Rules


@dataclass
class Due:
    """One enrolment's next step."""

    enrolment_id: str
    sender: str
    domain: str
    tz: ZoneInfo
    at: float  # the earliest it may go (its delay, the contact's gap, a pause)
    step: int
    # Delays of the steps after this one: the preview plans them too, the scheduler does not.
    then: tuple[float, ...] = ()


@dataclass(frozen=True)
class Planned:
    enrolment_id: str
    step: int
    sender: str
    domain: str
    at: float


@dataclass
class Counters:
    """What the send log says was sent, keyed as :class:`Rules` counts it."""

    sender_day: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    domain_hour: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    domain_day: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    sender_free: dict[str, float] = field(default_factory=dict)  # the end of its last gap
    sender_first_day: dict[str, int] = field(default_factory=dict)


@dataclass
class Plan:
    sends: list[Planned]
    deferred: dict[str, float]  # enrolment id -> the earliest time worth looking again
    sender_free: dict[str, float]  # for each sender that sent: when it may send again


class Planner:
    def __init__(self, rules: Rules, gap: Callable[[], float]) -> None:
        self.rules = rules
        self.gap = gap  # the wait after a send: random in the scheduler, the mean in a preview

    def plan(
        self,
        due: Iterable[Due],
        counters: Counters,
        *,
        start: float,
        until: float,
        limit: int | None = None,
    ) -> Plan:
        rules = self.rules
        order = itertools.count()
        queues: dict[str, list[tuple[float, int, Due]]] = defaultdict(list)
        for item in due:
            queues[item.sender].append((max(item.at, start), next(order), item))
        senders: list[tuple[float, str]] = []
        for sender, queue in queues.items():
            heapq.heapify(queue)
            senders.append((max(queue[0][0], counters.sender_free.get(sender, start)), sender))
        heapq.heapify(senders)

        sends: list[Planned] = []
        deferred: dict[str, float] = {}
        freed: dict[str, float] = {}
        while senders and (limit is None or len(sends) < limit):
            at, sender = senders[0]
            if at > until:
                break
            heapq.heappop(senders)
            queue = queues[sender]
            day, day_end = rules.calendar.day(at)
            first_day = counters.sender_first_day.get(sender)
            if counters.sender_day[sender, day] >= rules.caps.sender_limit(sender, day, first_day):
                heapq.heappush(senders, (day_end, sender))
                continue
            sent = None
            while queue and queue[0][0] <= at:
                _, tie, item = heapq.heappop(queue)
                later = self._blocked_until(item, at, counters)
                if later is None:
                    sent = item
                    break
                deferred[item.enrolment_id] = later
                heapq.heappush(queue, (later, tie, item))
            if sent is not None:
                deferred.pop(sent.enrolment_id, None)
                sends.append(Planned(sent.enrolment_id, sent.step, sender, sent.domain, at))
                self._count(sent, at, counters)
                free = at + self.gap()
                counters.sender_free[sender] = freed[sender] = free
                if sent.then:  # the next step, planned as the scheduler would enrol it
                    sent.at = at + max(sent.then[0], rules.contact_gap)
                    sent.step += 1
                    sent.then = sent.then[1:]
                    heapq.heappush(queue, (sent.at, next(order), sent))
            if queue:
                free = counters.sender_free.get(sender, start)
                heapq.heappush(senders, (max(queue[0][0], free, at), sender))
        # A sender that may not send again within the span: its steps wait for it, so the
        # scheduler need not look at them before then.
        for at, sender in senders:
            if at > until:
                for ready, _, item in queues[sender]:
                    deferred[item.enrolment_id] = max(ready, at)
        return Plan(sends, deferred, freed)

    def _blocked_until(self, item: Due, at: float, counters: Counters) -> float | None:
        """None when ``item`` may go at ``at``; else the first time that may change."""
        rules = self.rules
        opens = rules.windows.next_open(at, item.tz)
        if opens > at:
            return opens
        caps = rules.caps
        if caps.domain_hourly is not None:
            hour, hour_end = rules.calendar.hour(at)
            if counters.domain_hour[item.domain, hour] >= caps.domain_hourly:
                return hour_end
        if caps.domain_daily is not None:
            day, day_end = rules.calendar.day(at)
            if counters.domain_day[item.domain, day] >= caps.domain_daily:
                return day_end
        return None

    def _count(self, item: Due, at: float, counters: Counters) -> None:
        calendar = self.rules.calendar
        day, _ = calendar.day(at)
        hour, _ = calendar.hour(at)
        counters.sender_day[item.sender, day] += 1
        counters.domain_hour[item.domain, hour] += 1
        counters.domain_day[item.domain, day] += 1
        counters.sender_first_day.setdefault(item.sender, day)
