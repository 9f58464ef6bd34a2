"""Teams and their members; business hours and holidays, the tenant's default and each team's
(docs/admin.md, "Teams" and "Business hours")."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.actions import hours
from desk.actions import teams as act
from desk.actions.admin import ActionError
from desk.models import Team, TeamMember, User
from web.admin import admin_session, bp, change, done, page, parse_id
from web.admin.roles import client, requires


def _teams_page(session: Session, status: int = 200, error: str | None = None) -> ResponseReturnValue:
    teams = list(session.scalars(select(Team).order_by(Team.name)))
    people = list(session.scalars(select(User).where(User.is_active).order_by(User.name)))
    members: dict[uuid.UUID, set[uuid.UUID]] = {t.id: set() for t in teams}
    for m in session.scalars(select(TeamMember)):
        members.setdefault(m.team_id, set()).add(m.user_id)
    return page("admin/teams.html", status, teams=teams, people=people, members=members, error=error)


def _change(do: Any, message: str) -> ResponseReturnValue:
    return change(do, message, "admin.teams", lambda session, _, exc: _teams_page(session, exc.status, exc.message))


@bp.route("/teams", methods=["GET", "POST"])
@requires("admin", "owner")
def teams() -> ResponseReturnValue:
    if request.method == "POST":
        name = request.form.get("name", "")
        return _change(lambda s, a: act.do_create_team(s, a, client(), name), "Team created.")
    with admin_session() as (session, _actor):
        return _teams_page(session)


@bp.post("/teams/<team_id>")
@requires("admin", "owner")
def update_team(team_id: str) -> ResponseReturnValue:
    form = {**request.form.to_dict(), "member_ids": request.form.getlist("member_ids")}
    return _change(lambda s, a: act.do_update_team(s, a, client(), parse_id(team_id), form), "Team saved.")


@bp.post("/teams/<team_id>/delete")
@requires("admin", "owner")
def delete_team(team_id: str) -> ResponseReturnValue:
    return _change(lambda s, a: act.do_delete_team(s, a, client(), parse_id(team_id)), "Team deleted.")


# -- business hours -------------------------------------------------------------------------------------------


def _hours(team_id: uuid.UUID | None) -> ResponseReturnValue:
    with admin_session() as (session, actor):
        team = session.get(Team, team_id) if team_id else None
        if team_id is not None and team is None:
            return page("admin/refused.html", 404, title="Not found", message="No such team.")
        all_teams = list(session.scalars(select(Team).order_by(Team.name)))
        context = {"team": team, "teams": all_teams, "timezones": hours.timezones(), "weekdays": hours.DAY_NAMES}
        if request.method == "POST":
            try:
                hours.do_save_schedule(session, actor, client(), team_id, request.form.to_dict())
            except ActionError as exc:
                return page("admin/hours.html", exc.status, form=request.form, error=exc.message, **context)
            if team is None:
                return done("Business hours saved.", "admin.hours_page")
            return done(f"Business hours of {team.name} saved.", "admin.team_hours", team_id=team.id)
        form = hours.as_form(hours.schedule_of(session, team_id))
        return page("admin/hours.html", form=form, error=None, **context)


@bp.route("/hours", methods=["GET", "POST"])
@requires("admin", "owner")
def hours_page() -> ResponseReturnValue:
    return _hours(None)


@bp.route("/hours/<team_id>", methods=["GET", "POST"])
@requires("admin", "owner")
def team_hours(team_id: str) -> ResponseReturnValue:
    return _hours(parse_id(team_id))
