"""The team's working hours (``core.pipeline.working_hours``) and what counts as asking for a person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ConfigError
from core.pipeline.handoff import Handoffs
from core.pipeline.handoff_requests import asks_for_person
from core.pipeline.working_hours import WorkingHours, parse_spans
from core.settings import HandoffSettings, load_settings

# 2026-12-07 is a Monday
MONDAY_NOON_BERLIN = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)  # 12:00 in Berlin (UTC+1 in December)
SATURDAY = datetime(2026, 12, 12, 11, 0, tzinfo=UTC)


def test_spans_parse_ranges_lists_and_wrapping_weeks() -> None:
    (span,) = parse_spans("Mon-Fri 09:00-17:00")
    assert (sorted(span.days), span.start, span.end) == ([0, 1, 2, 3, 4], 540, 1020)
    first, second = parse_spans("Mon,Wed 08:30-12:00; Fri-Mon 10:00-24:00")
    assert sorted(first.days) == [0, 2] and sorted(second.days) == [0, 4, 5, 6] and second.end == 1440
    assert parse_spans("") == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Mon-Fri", "not a span"),
        ("Funday 09:00-17:00", "not a day"),
        ("Mon 17:00-09:00", "ends before it starts"),
        ("Mon 09:00-25:00", "not a time of day"),
        ("Mon 09:61-10:00", "not a time of day"),
    ],
)
def test_bad_spans_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_spans(text)


def test_a_bad_setting_refuses_to_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_HANDOFF__WORKING_HOURS", "weekdays 9-5")
    with pytest.raises(ConfigError, match="THREADLINE_HANDOFF__WORKING_HOURS"):
        load_settings()
    monkeypatch.setenv("THREADLINE_HANDOFF__WORKING_HOURS", "Mon-Fri 09:00-17:00")
    monkeypatch.setenv("THREADLINE_HANDOFF__TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="THREADLINE_HANDOFF__TIMEZONE"):
        load_settings()


def test_open_next_open_and_online_seconds_in_the_teams_time_zone() -> None:
    hours = WorkingHours("Mon-Fri 09:00-17:00", "Europe/Berlin")
    assert hours.is_open(MONDAY_NOON_BERLIN)
    assert not hours.is_open(MONDAY_NOON_BERLIN + timedelta(hours=6))  # 18:00 in Berlin
    assert not hours.is_open(SATURDAY)
    # Saturday → Monday 09:00 Berlin = 08:00 UTC
    assert hours.next_open(SATURDAY) == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    assert hours.next_open(MONDAY_NOON_BERLIN) == MONDAY_NOON_BERLIN
    # Friday 16:30 Berlin to Monday 09:30 Berlin: 30 minutes on Friday and 30 on Monday
    friday = datetime(2026, 12, 11, 15, 30, tzinfo=UTC)
    monday = datetime(2026, 12, 14, 8, 30, tzinfo=UTC)
    assert hours.online_seconds(friday, monday) == 3600
    assert hours.describe() == "Mon-Fri 09:00-17:00 (Europe/Berlin)"
    always = WorkingHours("")
    assert (
        always.is_open(SATURDAY)
        and always.online_seconds(friday, monday) == (monday - friday).total_seconds()
    )


def test_the_acknowledgement_says_when_the_team_is_back() -> None:
    handoffs = Handoffs(db=None, settings=HandoffSettings(timezone="Europe/Berlin"))  # type: ignore[arg-type]
    offline = handoffs.acknowledgement(SATURDAY)
    assert "online Mon-Fri 09:00-17:00 (Europe/Berlin)" in offline and "back Mon 09:00" in offline
    assert "shortly" in handoffs.acknowledgement(MONDAY_NOON_BERLIN)


@pytest.mark.parametrize(
    "text",
    [
        "human",
        "Human!",
        "agent please",
        "an agent",
        "I want a human",
        "operator?",
        "can I talk to a person about my bill?",
        "let me speak with someone",
        "Is there a real person there",
        "I need to speak to a live agent",
        "REPRESENTATIVE",
    ],
)
def test_requests_for_a_person(text: str) -> None:
    assert asks_for_person(text)


@pytest.mark.parametrize(
    "text",
    [
        "my travel agent booked the wrong date",
        "the person at the door left the parcel",
        "is this a human-readable invoice?",
        "what does an operator fee mean on my bill",
        "hello",
        "",
    ],
)
def test_ordinary_messages_are_not_requests_for_a_person(text: str) -> None:
    assert not asks_for_person(text)
