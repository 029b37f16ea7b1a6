"""Alert episodes on a clock the test turns: one mail when an alert fires, reminders after the
cooldown, escalation 1 → 2 → 3, one mail when it is resolved, and flapping kept quiet."""

from __future__ import annotations

from typing import Any

import pytest

from email_sender.alerts.checks import Check, Severity, Snapshot, evaluate
from email_sender.alerts.mails import compose
from email_sender.alerts.notifier import Notice, Notifier
from email_sender.mail.message import prepare_email
from email_sender.settings import AlertSettings, MailSettings

MINUTE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings(**values: Any) -> AlertSettings:
    base: dict[str, Any] = {
        "to": ["oncall@example.org"],
        "sender": "email-sender <alerts@example.org>",
        "cooldown": "10m",
        "pending": 0,
        "resolve_after": "1m",
        "escalation": {
            "level_2": {"after": "30m", "to": ["devops@example.org"]},
            "level_3": {"after": "2h", "to": ["experts@example.org", "devops@example.org"]},
        },
        "enabled": True,
    }
    return AlertSettings.model_validate({**base, **values})


def queue(age: float) -> list[Check]:
    checks = evaluate(Snapshot(queue_oldest_age=age))
    return [check for check in checks if check.name == "queue_age"]


STUCK, CRITICAL, FINE = queue(700), queue(4000), queue(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def kinds(notices: list[Notice]) -> list[tuple[str, int]]:
    return [(notice.kind, notice.level) for notice in notices]


def test_an_episode_fires_once_reminds_escalates_and_resolves_once(clock: Clock) -> None:
    notifier = Notifier(settings(), clock)
    mails: list[Notice] = []

    def at(minutes: float, checks: list[Check]) -> list[tuple[str, int]]:
        clock.now = start + minutes * MINUTE
        notices = notifier.observe(checks)
        mails.extend(notices)
        return kinds(notices)

    start = clock.now
    assert at(0, FINE) == []
    assert at(1, STUCK) == [("firing", 1)]
    assert at(2, STUCK) == []  # still firing, before the cooldown
    assert at(10.5, STUCK) == []
    assert at(11, STUCK) == [("reminder", 1)]  # 10 min after the last mail
    assert at(20, STUCK) == []
    assert at(31, STUCK) == [("escalated", 2)]  # fired 30 min ago: level 2, at once
    assert at(40, STUCK) == []
    assert at(41, STUCK) == [("reminder", 2)]
    assert at(121, STUCK) == [("escalated", 3)]
    assert at(131, STUCK) == [("reminder", 3)]
    assert at(132, FINE) == []  # ok, not yet for resolve_after
    assert at(133, FINE) == [("resolved", 3)]
    assert at(200, FINE) == []
    assert notifier.episodes == {}

    assert mails[0].recipients == ["oncall@example.org"]
    assert mails[2].recipients == ["oncall@example.org", "devops@example.org"]
    assert mails[-1].recipients == ["oncall@example.org", "devops@example.org",
                                    "experts@example.org"]
    assert [mail.number for mail in mails] == list(range(1, 8))
    assert len({mail.episode for mail in mails}) == 1
    assert mails[-1].severity is Severity.OK
    assert mails[-1].peak is Severity.WARNING
    assert mails[-1].duration == 132 * MINUTE


def test_a_check_getting_worse_is_mailed_at_once_and_getting_better_is_not(clock: Clock) -> None:
    notifier = Notifier(settings(), clock)
    assert kinds(notifier.observe(STUCK)) == [("firing", 1)]
    clock.advance(MINUTE)
    worse = notifier.observe(CRITICAL)
    assert kinds(worse) == [("worse", 1)]
    assert worse[0].severity is Severity.CRITICAL
    clock.advance(MINUTE)
    assert notifier.observe(STUCK) == []
    clock.advance(10 * MINUTE)
    reminder = notifier.observe(STUCK)
    assert kinds(reminder) == [("reminder", 1)]
    assert reminder[0].severity is Severity.WARNING
    assert reminder[0].peak is Severity.CRITICAL


def test_flapping_stays_one_episode(clock: Clock) -> None:
    """ok for less than resolve_after between failures: no resolved mail, no new episode."""
    notifier = Notifier(settings(), clock)
    notices: list[Notice] = []
    for _ in range(10):
        notices += notifier.observe(STUCK)
        clock.advance(20)
        notices += notifier.observe(FINE)
        clock.advance(20)
    assert kinds(notices) == [("firing", 1)]
    clock.advance(MINUTE)
    notices = notifier.observe(FINE)
    assert kinds(notices) == [("resolved", 1)]
    # A new failure after the resolve is a new episode, mailed again.
    clock.advance(MINUTE)
    again = notifier.observe(STUCK)
    assert kinds(again) == [("firing", 1)]
    assert again[0].episode != notices[0].episode
    assert again[0].number == 1


def test_a_check_fires_only_after_its_rule_hold_time(clock: Clock) -> None:
    """pending null: each rule's for (EmailSenderQueueStuck: 5m); a blip never mails."""
    notifier = Notifier(settings(pending=None), clock)
    assert notifier.observe(STUCK) == []
    clock.advance(2 * MINUTE)
    assert notifier.observe(FINE) == []  # the blip is forgotten
    clock.advance(MINUTE)
    assert notifier.observe(STUCK) == []
    clock.advance(4 * MINUTE)
    assert notifier.observe(STUCK) == []
    clock.advance(MINUTE)
    assert kinds(notifier.observe(STUCK)) == [("firing", 1)]


def test_checks_not_measured_keep_their_episode(clock: Clock) -> None:
    notifier = Notifier(settings(), clock)
    notifier.observe(STUCK)
    clock.advance(5 * MINUTE)
    assert notifier.observe([]) == []
    assert "queue_age" in notifier.episodes


def test_each_mail_is_an_email_the_intake_takes(clock: Clock) -> None:
    notifier = Notifier(settings(), clock)
    fired = notifier.observe(CRITICAL)[0]
    clock.advance(2 * MINUTE)
    notifier.observe(FINE)
    clock.advance(2 * MINUTE)
    resolved = notifier.observe(FINE)[0]
    firing_mail = compose(fired, node="node-1", sender="alerts@example.org", cooldown=600)
    resolved_mail = compose(resolved, node="node-1", sender="alerts@example.org", cooldown=600)
    assert firing_mail.subject == "[email-sender] FIRING CRITICAL: queue_age on node-1 (level 1)"
    assert resolved_mail.subject == (
        "[email-sender] RESOLVED: queue_age on node-1 after 4 min (was critical)"
    )
    assert "the oldest due email has waited 4000 s" in (firing_mail.text or "")
    assert "EmailSenderQueueStuck, EmailSenderQueueStuckCritical" in (firing_mail.text or "")
    assert firing_mail.tags == ["alert"]
    assert firing_mail.metadata["kind"] == "firing"
    assert firing_mail.idempotency_key != resolved_mail.idempotency_key
    for mail in (firing_mail, resolved_mail):
        prepared = prepare_email(mail, MailSettings())
        assert prepared.to == ["oncall@example.org"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"to": []}, "to: give at least one address"),
        ({"to": ["not-an-address"]}, "is not an email address"),
        ({"sender": None}, "sender: required when alerts are enabled"),
        ({"escalation": {"level_2": {"after": "2h"}, "level_3": {"after": "1h"}}},
         "level_3.after must be later than level_2.after"),
    ],
)
def test_bad_alert_settings_are_refused(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        settings(**values)
