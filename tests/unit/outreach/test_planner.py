"""The sending rules and the planner, in memory: windows in the contact's zone (DST included),
caps per sender, per domain and hour, the gap, warm-up, and steps that follow each other."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from email_sender.outreach.planner import Counters, Due, Planner
from email_sender.outreach.rules import Rules, Windows
from email_sender.settings import OutreachSettings

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def at(text: str, tz: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def local(moment: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(moment, tz)


def rules(**changes: object) -> Rules:
    settings = OutreachSettings.model_validate(changes)
    return Rules.from_settings(settings)


OFFICE = Windows.from_settings({day: ["09:00-18:00"] for day in ("mon", "tue", "wed", "thu",
                                                                 "fri")})


def test_a_window_is_open_inside_and_opens_next_outside() -> None:
    monday_morning = at("2026-12-07T08:00")
    assert OFFICE.next_open(monday_morning, PARIS) == at("2026-12-07T09:00")
    assert OFFICE.next_open(at("2026-12-07T10:30"), PARIS) == at("2026-12-07T10:30")
    # Friday evening waits for Monday morning.
    assert OFFICE.next_open(at("2026-12-11T18:00"), PARIS) == at("2026-12-14T09:00")
    assert OFFICE.next_open(at("2026-12-12T12:00"), PARIS) == at("2026-12-14T09:00")


def test_windows_are_local_to_the_contact() -> None:
    noon_paris = at("2026-12-07T12:00")
    assert OFFICE.is_open(noon_paris, PARIS)
    assert not OFFICE.is_open(noon_paris, NEW_YORK)  # 06:00 there
    assert local(OFFICE.next_open(noon_paris, NEW_YORK), NEW_YORK).hour == 9
    assert not OFFICE.is_open(noon_paris, TOKYO)  # 20:00 there
    opens = local(OFFICE.next_open(noon_paris, TOKYO), TOKYO)
    assert (opens.day, opens.hour) == (8, 9)


def test_a_window_across_a_daylight_saving_change_opens_at_local_nine() -> None:
    # Paris goes to summer time on Sunday 2027-03-28.
    opens = OFFICE.next_open(at("2027-03-27T12:00"), PARIS)
    assert local(opens, PARIS) == datetime(2027, 3, 29, 9, 0, tzinfo=PARIS)
    assert opens - at("2027-03-27T12:00") == (2 * 24 - 3 - 1) * 3600  # one hour shorter


def test_several_windows_in_a_day() -> None:
    split = Windows.from_settings({"mon": ["09:00-12:00", "14:00-17:30"]})
    assert split.next_open(at("2026-12-07T12:30"), PARIS) == at("2026-12-07T14:00")
    assert split.next_open(at("2026-12-07T17:30"), PARIS) == at("2026-12-14T09:00")


def due(count: int, *, sender: str = "booking@tour.example", domains: int = 1,
        tz: ZoneInfo = PARIS, start: float, then: tuple[float, ...] = ()) -> list[Due]:
    return [
        Due(f"e{index}", sender, f"venue{index % domains}.example", tz, start, 0, then)
        for index in range(count)
    ]


def test_the_gap_and_the_daily_cap_of_a_sender_hold_over_days() -> None:
    planner = Planner(rules(caps={"sender_daily": 20, "domain_hourly": None,
                                  "domain_daily": None}), lambda: 600.0)
    monday = at("2026-12-07T09:00")
    plan = planner.plan(due(50, start=monday, domains=50), Counters(),
                        start=monday, until=monday + 7 * 86400)
    times = [send.at for send in plan.sends]
    assert len(times) == 50 and times == sorted(times)
    assert all(later - earlier >= 600 for earlier, later in itertools.pairwise(times))
    per_day = Counter(local(moment, ZoneInfo("UTC")).date() for moment in times)
    assert max(per_day.values()) == 20 and sum(per_day.values()) == 50
    assert all(OFFICE.is_open(moment, PARIS) for moment in times)


def test_a_domain_gets_no_more_than_its_hourly_and_daily_caps() -> None:
    planner = Planner(rules(caps={"sender_daily": 1000, "domain_hourly": 2, "domain_daily": 5},
                            gap={"min": 60, "max": 60}), lambda: 60.0)
    monday = at("2026-12-07T09:00")
    plan = planner.plan(due(12, start=monday), Counters(), start=monday,
                        until=monday + 7 * 86400)
    hours = Counter(int(send.at // 3600) for send in plan.sends)
    days = Counter(local(send.at, ZoneInfo("UTC")).date() for send in plan.sends)
    assert len(plan.sends) == 12
    assert max(hours.values()) == 2 and max(days.values()) == 5


def test_what_was_already_sent_today_counts() -> None:
    settings_rules = rules(caps={"sender_daily": 10, "domain_hourly": None,
                                 "domain_daily": None})
    planner = Planner(settings_rules, lambda: 0.0)
    monday = at("2026-12-07T09:00")
    day, _ = settings_rules.calendar.day(monday)
    counters = Counters()
    counters.sender_day["booking@tour.example", day] = 8
    plan = planner.plan(due(5, start=monday, domains=5), counters, start=monday, until=monday)
    assert len(plan.sends) == 2
    # The three that wait are told to come back tomorrow, not at every tick.
    assert set(plan.deferred) == {"e2", "e3", "e4"}
    assert all(moment >= at("2026-12-08T00:00", ZoneInfo("UTC")) for moment in
               plan.deferred.values())


def test_warm_up_ramps_a_new_sender() -> None:
    planner = Planner(rules(caps={"sender_daily": 100, "domain_hourly": None,
                                  "domain_daily": None},
                            warmup={"enabled": True, "start": 3, "increase": 2}), lambda: 60.0)
    monday = at("2026-12-07T09:00")
    plan = planner.plan(due(20, start=monday, domains=20), Counters(), start=monday,
                        until=monday + 5 * 86400)
    per_day = Counter(local(send.at, ZoneInfo("UTC")).date() for send in plan.sends)
    assert [per_day[day] for day in sorted(per_day)] == [3, 5, 7, 5]


def test_following_steps_wait_their_delay_and_the_contact_gap() -> None:
    planner = Planner(rules(gap={"min": 0, "max": 0, "contact_min": 86400},
                            caps={"domain_hourly": None, "domain_daily": None}), lambda: 0.0)
    monday = at("2026-12-07T09:00")
    plan = planner.plan(due(1, start=monday, then=(3600.0, 7 * 86400.0)), Counters(),
                        start=monday, until=monday + 30 * 86400)
    assert [send.step for send in plan.sends] == [0, 1, 2]
    first, second, third = (send.at for send in plan.sends)
    assert second - first >= 86400  # the contact gap outweighs the 1 h delay
    assert third - second >= 7 * 86400
    assert all(OFFICE.is_open(moment, PARIS) for moment in (first, second, third))


def test_a_sender_busy_past_the_span_defers_all_its_steps() -> None:
    planner = Planner(rules(), lambda: 600.0)
    monday = at("2026-12-07T09:00")
    counters = Counters(sender_free={"booking@tour.example": monday + 300})
    plan = planner.plan(due(3, start=monday, domains=3), counters, start=monday, until=monday)
    assert plan.sends == []
    assert plan.deferred == {"e0": monday + 300, "e1": monday + 300, "e2": monday + 300}


@pytest.mark.parametrize(
    "windows", [{"mon": ["18:00-09:00"]}, {"sun": []}, {"noday": ["09:00-10:00"]}]
)
def test_bad_windows_are_refused_by_name(windows: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError, match="windows"):
        OutreachSettings.model_validate({"windows": windows})
