"""Business hours and holidays (docs/admin.md, "Business hours"): the tenant's default schedule and each
team's own, in a time zone. Opening intervals are local times per weekday, "HH:MM-HH:MM", without overlaps."""

from __future__ import annotations

import re
import uuid
from datetime import date
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from desk import audit
from desk.actions.admin import Invalid, NotFound, record
from desk.models import Schedule, Team, Tenant, User

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = dict(
    zip(WEEKDAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True)
)
INTERVALS_PER_DAY = 6
HOLIDAYS_MAX = 100
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")
FIELDS = ("timezone", "weekly", "holidays")


@cache
def timezones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _minutes(value: str, day: str) -> int:
    if not _TIME.fullmatch(value):
        raise Invalid(f"{DAY_NAMES[day]}: {value!r} is not a time (HH:MM, 00:00 to 24:00).")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def parse_day(day: str, value: str) -> list[list[str]]:
    """ "09:00-12:00, 13:00-17:30" → [["09:00", "12:00"], ["13:00", "17:30"]], sorted; empty: closed."""
    intervals: list[tuple[int, int, str, str]] = []
    for part in (p.strip() for p in value.replace(";", ",").split(",")):
        if not part:
            continue
        start, sep, end = (s.strip() for s in part.partition("-"))
        if not sep:
            raise Invalid(f"{DAY_NAMES[day]}: write each opening as start-end, like 09:00-17:30.")
        low, high = _minutes(start, day), _minutes(end, day)
        if low >= high:
            raise Invalid(f"{DAY_NAMES[day]}: {start}-{end} ends before it starts.")
        intervals.append((low, high, start, end))
    intervals.sort()
    if len(intervals) > INTERVALS_PER_DAY:
        raise Invalid(f"{DAY_NAMES[day]}: at most {INTERVALS_PER_DAY} openings.")
    for before, after in zip(intervals, intervals[1:], strict=False):
        if after[0] < before[1]:
            raise Invalid(f"{DAY_NAMES[day]}: {before[2]}-{before[3]} and {after[2]}-{after[3]} overlap.")
    return [[start, end] for _, _, start, end in intervals]


def parse_holidays(value: str) -> list[str]:
    days: set[str] = set()
    for part in (p.strip() for p in value.replace(",", "\n").splitlines()):
        if not part:
            continue
        try:
            days.add(date.fromisoformat(part).isoformat())
        except ValueError:
            raise Invalid(f"Holidays: {part!r} is not a date (YYYY-MM-DD).") from None
    if len(days) > HOLIDAYS_MAX:
        raise Invalid(f"At most {HOLIDAYS_MAX} holidays.")
    return sorted(days)


def parse(form: dict[str, Any]) -> dict[str, Any]:
    """A schedule from the form: `timezone`, `hours_mon` … `hours_sun`, `holidays`."""
    zone = (form.get("timezone") or "").strip()
    if zone not in timezones():
        raise Invalid(f"Unknown time zone {zone!r}: choose one from the list.")
    weekly = {day: parse_day(day, form.get(f"hours_{day}", "")) for day in WEEKDAYS}
    return {"timezone": zone, "weekly": weekly, "holidays": parse_holidays(form.get("holidays", ""))}


def as_form(schedule: Schedule | None) -> dict[str, str]:
    """A stored schedule as the form shows it."""
    if schedule is None:
        return {"timezone": "UTC", "holidays": "", **{f"hours_{d}": "" for d in WEEKDAYS}}
    form = {"timezone": schedule.timezone, "holidays": "\n".join(schedule.holidays)}
    for day in WEEKDAYS:
        form[f"hours_{day}"] = ", ".join(f"{a}-{b}" for a, b in schedule.weekly.get(day, []))
    return form


def schedule_query(team_id: uuid.UUID | None) -> Select[tuple[Schedule]]:
    """The team's schedule, or the tenant's default (team_id None): the first made, should there be two."""
    query = select(Schedule).where(Schedule.team_id.is_(None) if team_id is None else Schedule.team_id == team_id)
    return query.order_by(Schedule.created_at).limit(1)


def schedule_of(session: Session, team_id: uuid.UUID | None) -> Schedule | None:
    return session.scalars(schedule_query(team_id)).first()


def do_save_schedule(
    session: Session, actor: User, client: audit.Client, team_id: uuid.UUID | None, form: dict[str, Any]
) -> Schedule:
    """The tenant's default schedule (team_id None) or a team's, replaced by the validated form. Commits."""
    values = parse(form)
    if team_id is not None and session.get(Team, team_id) is None:
        raise NotFound("No such team.")
    session.get(Tenant, actor.tenant_id, with_for_update=True)  # one default schedule, even when two admins save
    schedule = schedule_of(session, team_id)
    before = audit.snapshot(schedule, FIELDS) if schedule else {}
    if schedule is None:
        schedule = Schedule(team_id=team_id)
        session.add(schedule)
    schedule.timezone, schedule.weekly, schedule.holidays = values["timezone"], values["weekly"], values["holidays"]
    after = audit.snapshot(schedule, FIELDS)
    if after != before:
        record(
            session,
            actor,
            client,
            "hours.update",
            before=before,
            after=after,
            team_id=str(team_id) if team_id else None,
        )
    session.commit()
    return schedule
