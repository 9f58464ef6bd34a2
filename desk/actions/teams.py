"""Teams (docs/admin.md, "Teams"): groups of agents that conversations can be assigned to."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from desk import audit
from desk.actions.admin import Conflict, Invalid, NotFound, record, text
from desk.models import Team, TeamMember, User

TEAM_NAME_CHARS = 100


def _team(session: Session, team_id: uuid.UUID) -> Team:
    team = session.get(Team, team_id, with_for_update=True)
    if team is None:
        raise NotFound("No such team.")
    return team


def _commit_unique(session: Session, name: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"There is a team called {name!r} already.") from None


def do_create_team(session: Session, actor: User, client: audit.Client, name: str) -> Team:
    team = Team(name=text(name, "Team name", TEAM_NAME_CHARS))
    session.add(team)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"There is a team called {team.name!r} already.") from None
    record(session, actor, client, "team.create", after={"name": team.name}, team_id=team.id)
    _commit_unique(session, team.name)
    return team


def do_update_team(
    session: Session, actor: User, client: audit.Client, team_id: uuid.UUID, form: dict[str, Any]
) -> Team:
    """Rename, and set the members (`member_ids`: the users in the team)."""
    team = _team(session, team_id)
    names = {u.id: u.email for u in session.scalars(select(User))}
    try:
        wanted = {uuid.UUID(m) for m in form.get("member_ids", [])}
    except ValueError:
        raise Invalid("No such agent.") from None
    if not wanted <= names.keys():
        raise Invalid("No such agent.")
    current = set(session.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team.id)))
    before = {"name": team.name, "members": sorted(names[m] for m in current)}
    team.name = text(form.get("name"), "Team name", TEAM_NAME_CHARS)
    session.execute(delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id.not_in(wanted)))
    session.add_all(TeamMember(team_id=team.id, user_id=m) for m in wanted - current)
    after = {"name": team.name, "members": sorted(names[m] for m in wanted)}
    if after != before:
        record(session, actor, client, "team.update", before=before, after=after, team_id=team.id)
    _commit_unique(session, team.name)
    return team


def do_delete_team(session: Session, actor: User, client: audit.Client, team_id: uuid.UUID) -> None:
    """Its members stay agents; its conversations keep their assignee and lose the team; its hours go."""
    team = _team(session, team_id)
    record(session, actor, client, "team.delete", before={"name": team.name}, team_id=team.id)
    session.delete(team)
    session.commit()
