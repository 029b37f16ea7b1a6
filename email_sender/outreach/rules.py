"""The sending rules of outreach, as pure functions of time: windows, caps, warm-up.

Times are epoch seconds. A send window is local to the contact (its IANA time zone); days and
hours that caps count are local to ``outreach.timezone``. Nothing here reads a clock or the
database: the scheduler and the planner give the time and the counts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from email_sender.settings import WEEKDAYS, OutreachSettings

DAY = 86400.0
HOUR = 3600.0
# How far ahead a window is looked for: more than a week means there is none.
_SEARCH_DAYS = 8


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class Windows:
    """Per weekday (0 = Monday), the open spans in minutes after local midnight."""

    spans: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def from_settings(cls, windows: dict[str, list[str]]) -> Windows:
        days = []
        for name in WEEKDAYS:
            spans = []
            for span in windows.get(name, []):
                start, end = span.split("-")
                spans.append((_minutes(start), _minutes(end)))
            days.append(tuple(sorted(spans)))
        return cls(tuple(days))

    def next_open(self, at: float, tz: ZoneInfo) -> float:
        """``at`` itself when a window is open then, else when the next one opens."""
        local = datetime.fromtimestamp(at, tz)
        minute = local.hour * 60 + local.minute + local.second / 60
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(_SEARCH_DAYS):
            day = (midnight.date() + timedelta(days=offset))
            for start, end in self.spans[day.weekday()]:
                if offset == 0 and start <= minute < end:
                    return at
                if offset > 0 or start > minute:
                    opens = datetime(day.year, day.month, day.day, start // 60, start % 60,
                                     tzinfo=tz)
                    return max(opens.timestamp(), at)
        raise ValueError("no send window in a week")  # the settings refuse this

    def is_open(self, at: float, tz: ZoneInfo) -> bool:
        return self.next_open(at, tz) == at


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return min(int(hours) * 60 + int(minutes), 24 * 60)


@dataclass(frozen=True)
class Calendar:
    """Local days and hours in one time zone, as (key, end) pairs."""

    tz: ZoneInfo

    def day(self, at: float) -> tuple[int, float]:
        local = datetime.fromtimestamp(at, self.tz)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = datetime.combine(start.date() + timedelta(days=1), start.time(), tzinfo=self.tz)
        return start.toordinal(), end.timestamp()

    def day_start(self, at: float) -> float:
        local = datetime.fromtimestamp(at, self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def hour(self, at: float) -> tuple[int, float]:
        # Whole seconds from datetime arithmetic: a boundary computed by subtracting fractions
        # drifts by a rounding error, and a send exactly on the hour would count in both.
        local = datetime.fromtimestamp(at, self.tz)
        end = local.replace(minute=0, second=0, microsecond=0).timestamp() + HOUR
        return int(end // 60), end


@dataclass(frozen=True)
class Caps:
    sender_daily: int
    per_sender: dict[str, int] = field(default_factory=dict)
    domain_hourly: int | None = None
    domain_daily: int | None = None
    warmup_start: int | None = None  # None: no warm-up
    warmup_increase: int = 0

    def sender_limit(self, sender: str, day: int, first_day: int | None) -> int:
        """The sender's cap on local ``day`` (an ordinal), ramped up from its first day."""
        limit = self.per_sender.get(sender, self.sender_daily)
        if self.warmup_start is not None:
            days_in = 0 if first_day is None else max(0, day - first_day)
            limit = min(limit, self.warmup_start + self.warmup_increase * days_in)
        return limit


@dataclass(frozen=True)
class Rules:
    windows: Windows
    calendar: Calendar
    caps: Caps
    gap_min: float
    gap_max: float
    contact_gap: float
    default_tz: ZoneInfo

    @classmethod
    def from_settings(cls, settings: OutreachSettings) -> Rules:
        caps = settings.caps
        warmup = settings.warmup
        return cls(
            windows=Windows.from_settings(settings.windows),
            calendar=Calendar(zone(settings.timezone)),
            caps=Caps(
                sender_daily=caps.sender_daily,
                per_sender={address.lower(): cap for address, cap in caps.senders.items()},
                domain_hourly=caps.domain_hourly,
                domain_daily=caps.domain_daily,
                warmup_start=warmup.start if warmup.enabled else None,
                warmup_increase=warmup.increase,
            ),
            gap_min=settings.gap.min,
            gap_max=settings.gap.max,
            contact_gap=settings.gap.contact_min,
            default_tz=zone(settings.timezone),
        )

    def contact_zone(self, name: str | None) -> ZoneInfo:
        return zone(name) if name else self.default_tz
