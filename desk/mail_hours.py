"""Whether a schedule (desk/actions/hours.py) is open now and, when closed, when it opens again: what the widget
says outside business hours ("We're back Monday at 9:00 (Europe/Paris)"). docs/widget.md, "Outside business hours".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from desk.actions.hours import DAY_NAMES, WEEKDAYS
from desk.models import Schedule

# A schedule whose next opening is further than this is taken as closed "until further notice" (no date shown).
LOOKAHEAD_DAYS = 370


@dataclass(frozen=True)
class HoursStatus:
    open: bool
    timezone: str | None = None
    back_at: datetime | None = None  # the next opening, in the schedule's time zone; None: open, or not known

    def text(self) -> str | None:
        """English, for emails and as the widget's fallback; None when open."""
        if self.open:
            return None
        if self.back_at is None:
            return "We're away at the moment."
        return f"We're back {self.back_day()} at {self.back_at:%-H:%M} ({self.timezone})."

    def back_day(self) -> str:
        assert self.back_at is not None
        today = datetime.now(self.back_at.tzinfo).date()
        if self.back_at.date() == today:
            return "today"
        if self.back_at.date() == today + timedelta(days=1):
            return "tomorrow"
        if self.back_at.date() < today + timedelta(days=7):
            return DAY_NAMES[WEEKDAYS[self.back_at.weekday()]]
        return f"on {self.back_at:%-d %B %Y}"

    def as_json(self) -> dict[str, Any]:
        """What the session response carries (docs/protocol.md, step 1): `back_at` with its offset, the weekday
        (mon…sun) and local time to show, and the English sentence."""
        return {
            "open": self.open,
            "timezone": self.timezone,
            "back_at": self.back_at.isoformat() if self.back_at else None,
            "back_weekday": WEEKDAYS[self.back_at.weekday()] if self.back_at else None,
            "back_time": f"{self.back_at:%-H:%M}" if self.back_at else None,
            "text": self.text(),
        }


def _openings(schedule: Schedule, day: date) -> list[tuple[time, time | None]]:
    if day.isoformat() in schedule.holidays:
        return []
    spans = []
    for start, end in schedule.weekly.get(WEEKDAYS[day.weekday()], []):
        spans.append((time.fromisoformat(start), None if end == "24:00" else time.fromisoformat(end)))
    return spans


def status(schedule: Schedule | None, now: datetime | None = None) -> HoursStatus:
    """Open when there is no schedule (every hour is business hours) or `now` is inside one of today's openings;
    otherwise closed, with the next opening (a holiday counts as closed all day)."""
    if schedule is None:
        return HoursStatus(open=True)
    zone = ZoneInfo(schedule.timezone)
    local = (now or datetime.now(UTC)).astimezone(zone)
    for start, end in _openings(schedule, local.date()):
        if start <= local.time() and (end is None or local.time() < end):
            return HoursStatus(open=True, timezone=schedule.timezone)
    for ahead in range(LOOKAHEAD_DAYS):
        day = local.date() + timedelta(days=ahead)
        for start, _ in _openings(schedule, day):
            opening = datetime.combine(day, start, tzinfo=zone)
            if opening > local:
                return HoursStatus(open=False, timezone=schedule.timezone, back_at=opening)
    return HoursStatus(open=False, timezone=schedule.timezone)
