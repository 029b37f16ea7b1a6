"""Alert episodes: when a check's alert starts, is reminded, escalates and ends, and who is told.

An episode of a check opens once the check has failed for its hold time (the rule's ``for``, or
``alerts.pending``) and closes once it has been ok for ``alerts.resolve_after``: a check that
flaps inside those spans never opens an episode, or stays in the one it has. One episode mails:

- ``firing`` when it opens (level 1: ``alerts.to``);
- ``escalated`` when it has fired for ``escalation.level_2.after`` (level 2) and
  ``level_3.after`` (level 3), each level adding its own recipients;
- ``worse`` when it goes from warning to critical;
- ``reminder`` when ``alerts.cooldown`` has passed since its last mail;
- ``resolved`` once when it clears, to everyone it told.

The state is kept in memory by each node: a restart forgets open episodes (an alert still
failing fires again after its hold time), and nodes alert for themselves, each on its figures.
Pure: the clock is given, nothing is sent here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from email_sender.alerts.checks import Check, Severity
from email_sender.settings import AlertSettings

Kind = Literal["firing", "reminder", "escalated", "worse", "resolved"]


@dataclass
class Episode:
    """One alert of one check, from the evaluation it fired at to the one it cleared at."""

    check: Check
    started_at: float
    severity: Severity
    level: int = 1
    mails: int = 0
    last_mail_at: float = 0.0
    ok_since: float | None = None
    peak: Severity = Severity.OK

    @property
    def key(self) -> str:
        """Stable for the episode: names it in mail metadata and idempotency keys."""
        return f"{self.check.name}@{self.started_at:.3f}"


@dataclass(frozen=True)
class Notice:
    """A mail to send about an episode."""

    kind: Kind
    check: Check
    severity: Severity
    level: int
    peak: Severity
    started_at: float
    at: float
    number: int
    episode: str
    recipients: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.at - self.started_at


class Notifier:
    def __init__(self, settings: AlertSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.episodes: dict[str, Episode] = {}
        # Checks failing but not yet for their hold time: since when.
        self.pending: dict[str, float] = {}

    def observe(self, checks: Iterable[Check]) -> list[Notice]:
        """Take one evaluation's checks; answer the mails it calls for, in check order.

        A check missing from ``checks`` (its figure was not measured) keeps its state.
        """
        now = self.clock()
        notices: list[Notice] = []
        for check in checks:
            notice = self._firing(check, now) if check.firing else self._ok(check, now)
            if notice is not None:
                notices.append(notice)
        return notices

    def level_after(self, seconds: float) -> int:
        escalation = self.settings.escalation
        if seconds >= escalation.level_3.after:
            return 3
        if seconds >= escalation.level_2.after:
            return 2
        return 1

    def recipients(self, level: int) -> list[str]:
        escalation = self.settings.escalation
        addresses = list(self.settings.to)
        if level >= 2:
            addresses += escalation.level_2.to
        if level >= 3:
            addresses += escalation.level_3.to
        return list(dict.fromkeys(addresses))

    def _firing(self, check: Check, now: float) -> Notice | None:
        episode = self.episodes.get(check.name)
        if episode is None:
            since = self.pending.setdefault(check.name, now)
            hold = self.settings.pending if self.settings.pending is not None else check.hold
            if now - since < hold:
                return None
            del self.pending[check.name]
            episode = Episode(check, now, check.severity, peak=check.severity)
            self.episodes[check.name] = episode
            return self._mail(episode, "firing", now)
        episode.ok_since = None
        episode.check = check
        level = self.level_after(now - episode.started_at)
        worse = check.severity > episode.severity
        episode.severity = check.severity
        episode.peak = max(episode.peak, check.severity)
        if level > episode.level:
            episode.level = level
            return self._mail(episode, "escalated", now)
        if worse:
            return self._mail(episode, "worse", now)
        if now - episode.last_mail_at >= self.settings.cooldown:
            return self._mail(episode, "reminder", now)
        return None

    def _ok(self, check: Check, now: float) -> Notice | None:
        self.pending.pop(check.name, None)
        episode = self.episodes.get(check.name)
        if episode is None:
            return None
        if episode.ok_since is None:
            episode.ok_since = now
        if now - episode.ok_since < self.settings.resolve_after:
            return None
        del self.episodes[check.name]
        episode.check = check
        return self._mail(episode, "resolved", now)

    def _mail(self, episode: Episode, kind: Kind, now: float) -> Notice:
        episode.mails += 1
        episode.last_mail_at = now
        return Notice(
            kind=kind,
            check=episode.check,
            severity=episode.severity if kind != "resolved" else Severity.OK,
            level=episode.level,
            peak=episode.peak,
            started_at=episode.started_at,
            at=now,
            number=episode.mails,
            episode=episode.key,
            recipients=self.recipients(episode.level),
        )
