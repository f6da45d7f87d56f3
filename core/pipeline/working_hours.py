"""When the support team is online: ``THREADLINE_HANDOFF__WORKING_HOURS`` in ``__TIMEZONE``.

The setting is a list of spans separated by ``;``, each days then hours: ``Mon-Fri 09:00-17:00; Sat
10:00-14:00``. Days are ``Mon`` … ``Sun``, a range (``Mon-Fri``, ``Fri-Mon`` wraps) or a comma list
(``Mon,Wed``); hours are ``HH:MM-HH:MM`` with the end after the start (``24:00`` is the end of the day).
An empty setting means always online.

``WorkingHours`` answers what the handoff needs: whether the team is online now, when it next comes
online, how it reads to a customer, and how many online seconds lie between two instants (an unanswered
handoff is escalated after so many minutes of the team's time, not of the night's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SPAN = re.compile(
    r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)
# a week has 7 days: nothing online within 8 means never online
_SEARCH_DAYS = 8


@dataclass(frozen=True, slots=True)
class Span:
    """Online from ``start`` to ``end`` minutes after midnight on each of ``days`` (0 = Monday)."""

    days: frozenset[int]
    start: int
    end: int

    def describe(self) -> str:
        return f"{_days_text(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: frozenset[int]) -> str:
    ordered = sorted(days)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{DAYS[ordered[0]]}-{DAYS[ordered[-1]]}"
    return ",".join(DAYS[d] for d in ordered)


def _day(name: str) -> int:
    key = name.strip()[:3].title()
    if key not in DAYS or len(name.strip()) < 3:
        raise ValueError(f"{name.strip()!r} is not a day: use Mon, Tue, Wed, Thu, Fri, Sat or Sun")
    return DAYS.index(key)


def _minutes(text: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    return hours * 60 + minutes


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not dash:
            days.add(_day(first))
            continue
        start, end = _day(first), _day(last)
        days.update((start + step) % 7 for step in range((end - start) % 7 + 1))
    return frozenset(days)


def parse_spans(text: str) -> tuple[Span, ...]:
    """The spans of a working-hours setting; ``ValueError`` naming what is wrong. Empty: no spans."""
    spans: list[Span] = []
    for chunk in text.split(";"):
        if not chunk.strip():
            continue
        found = _SPAN.match(chunk)
        if found is None:
            raise ValueError(f"{chunk.strip()!r} is not a span such as 'Mon-Fri 09:00-17:00'")
        start, end = _minutes(found["start"]), _minutes(found["end"])
        if end <= start:
            raise ValueError(f"{chunk.strip()!r} ends before it starts")
        spans.append(Span(days=_days(found["days"]), start=start, end=end))
    return tuple(spans)


class WorkingHours:
    """The team's online hours in its time zone (no spans: always online)."""

    __slots__ = ("_spans", "_zone")

    def __init__(self, spans: str, zone: str = "UTC") -> None:
        self._spans = parse_spans(spans)
        self._zone = ZoneInfo(zone)

    @property
    def always(self) -> bool:
        return not self._spans

    def describe(self) -> str:
        """How the hours read to a customer: ``Mon-Fri 09:00-17:00 (Europe/Berlin)``."""
        if self.always:
            return "around the clock"
        return f"{'; '.join(span.describe() for span in self._spans)} ({self._zone.key})"

    def _intervals(self, day: datetime) -> list[tuple[datetime, datetime]]:
        """The online intervals (UTC) of the local calendar day that ``day`` (local midnight) starts."""
        found = []
        for span in self._spans:
            if day.weekday() in span.days:
                start = datetime.combine(day.date(), time(), self._zone) + timedelta(minutes=span.start)
                end = datetime.combine(day.date(), time(), self._zone) + timedelta(minutes=span.end)
                found.append((start.astimezone(UTC), end.astimezone(UTC)))
        return sorted(found)

    def _days_from(self, moment: datetime, count: int) -> list[list[tuple[datetime, datetime]]]:
        local = moment.astimezone(self._zone)
        midnight = datetime.combine(local.date(), time(), self._zone)
        return [self._intervals(midnight + timedelta(days=offset)) for offset in range(-1, count)]

    def is_open(self, now: datetime) -> bool:
        if self.always:
            return True
        return any(start <= now < end for day in self._days_from(now, 1) for start, end in day)

    def next_open(self, now: datetime) -> datetime | None:
        """``now`` when the team is online, else when it next comes online (None: never)."""
        if self.is_open(now):
            return now
        starts = [start for day in self._days_from(now, _SEARCH_DAYS) for start, _ in day if start > now]
        return min(starts) if starts else None

    def online_seconds(self, since: datetime, until: datetime) -> float:
        """Seconds between ``since`` and ``until`` during which the team was online."""
        if until <= since:
            return 0.0
        if self.always:
            return (until - since).total_seconds()
        total = 0.0
        days = (until - since).days + 2
        seen: set[tuple[datetime, datetime]] = set()
        for day in self._days_from(since, days):
            for start, end in day:
                if (start, end) in seen:
                    continue
                seen.add((start, end))
                overlap = (min(end, until) - max(start, since)).total_seconds()
                total += max(0.0, overlap)
        return total
