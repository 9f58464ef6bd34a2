"""Routing rules (docs/admin.md, "Routing rules"; docs/architecture.md, "Routing and the queue"): the admin's edits
of the ordered list (add, delete, move up or down, each audited), and applying it to a new conversation.

The list lives in `tenants.settings["routing"]["rules"]`; its shape and the matcher are desk/routing_rules.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from desk import audit, mail_hours, signals
from desk import routing_rules as rules
from desk.actions.admin import Invalid, NotFound, record
from desk.actions.hours import schedule_of
from desk.models import Conversation, ConversationEvent, Site, Team, Tenant, User, Visitor


def stored_rules(settings: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The rules in a tenant's settings, in order (none: an empty list)."""
    found = ((settings or {}).get("routing") or {}).get("rules")
    return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []


def _ids(session: Session, model: type[Team] | type[Site]) -> set[str]:
    return {str(i) for i in session.scalars(select(model.id))}


def _save(
    session: Session, actor: User, client: audit.Client, action: str, change: Any, **detail: Any
) -> list[dict[str, Any]]:
    """Apply `change(rules) -> rules` to the tenant's list under its row's lock, validate, audit, commit."""
    tenant = session.get(Tenant, actor.tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound("No such tenant.")
    before = stored_rules(tenant.settings)
    after = change([dict(r) for r in before])
    try:
        # Rules of a deleted team stay until the admin deletes them (they never match: the team is gone).
        team_ids = _ids(session, Team) | {str(r.get("team_id")) for r in before}
        after = rules.validate(after, team_ids, _ids(session, Site) | {str(r.get("value")) for r in before})
    except rules.InvalidRule as exc:
        session.rollback()
        raise Invalid(str(exc)) from None
    settings = dict(tenant.settings or {})
    settings["routing"] = {**(settings.get("routing") or {}), "rules": after}
    tenant.settings = settings
    record(session, actor, client, action, before={"rules": before}, after={"rules": after}, **detail)
    session.commit()
    return after


def do_add_rule(session: Session, actor: User, client: audit.Client, form: dict[str, Any]) -> dict[str, Any]:
    """A new rule at the end of the list (the admin moves it up). Commits; returns the rule."""
    try:
        rule = rules.parse_rule(form, _ids(session, Team), _ids(session, Site))
    except rules.InvalidRule as exc:
        raise Invalid(str(exc)) from None

    def add(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(current) >= rules.RULES_MAX:
            raise Invalid(f"At most {rules.RULES_MAX} routing rules: delete one first.")
        return [*current, rule]

    try:
        _save(session, actor, client, "routing_rules.add", add, rule_id=rule["id"])
    except Invalid:
        session.rollback()
        raise
    return rule


def _index(current: list[dict[str, Any]], rule_id: str) -> int:
    for n, rule in enumerate(current):
        if rule.get("id") == rule_id:
            return n
    raise NotFound("No such rule: someone may have deleted it meanwhile. Look at the list again.")


def do_delete_rule(session: Session, actor: User, client: audit.Client, rule_id: str) -> None:
    def delete(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        n = _index(current, rule_id)
        return current[:n] + current[n + 1 :]

    try:
        _save(session, actor, client, "routing_rules.delete", delete, rule_id=rule_id)
    except NotFound:
        session.rollback()
        raise


def do_move_rule(session: Session, actor: User, client: audit.Client, rule_id: str, direction: str) -> None:
    """One place up (earlier: checked first) or down. At the top already, up changes nothing (and so on)."""
    if direction not in ("up", "down"):
        raise Invalid("Move a rule up or down.")

    def move(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        n = _index(current, rule_id)
        other = n - 1 if direction == "up" else n + 1
        if 0 <= other < len(current):
            current[n], current[other] = current[other], current[n]
        return current

    try:
        _save(session, actor, client, "routing_rules.move", move, rule_id=rule_id, direction=direction)
    except NotFound:
        session.rollback()
        raise


# -- applying them ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamRouted:
    """A new conversation a rule sent to a team, and the `assigned` event that records it."""

    conversation_id: uuid.UUID
    team_id: uuid.UUID
    event_id: int

    def signal(self) -> dict[str, Any]:
        return signals.conversation_changed(
            self.conversation_id,
            "assigned",
            event_id=self.event_id,
            status="open",
            assignee_id=None,
            team_id=str(self.team_id),
            by="routing",
        )


def _page_at_start(visitor: Visitor, started: datetime) -> str:
    """The page the visitor was on when the conversation started: the last step of their trail by then (the
    trail's times are to the second), else the page they are on now."""
    url = ""
    for step in visitor.trail or []:
        try:
            at = datetime.fromisoformat(str(step.get("at")))
        except ValueError:
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        if at <= started and isinstance(step.get("url"), str):
            url = step["url"]
    return url or str((visitor.page or {}).get("url") or "")


def facts_of(visitor: Visitor, conversation: Conversation | None = None) -> rules.Facts:
    """What the rules look at: the conversation's start (its page, its labels), or the visitor now without one."""
    context = visitor.context or {}
    attributes = context.get("attributes") if isinstance(context.get("attributes"), dict) else {}
    page = (visitor.page or {}).get("url") or ""
    return rules.Facts(
        page_url=_page_at_start(visitor, conversation.created_at) if conversation else str(page),
        language=str(context.get("language") or ""),
        attributes={str(k): str(v) for k, v in attributes.items()},
        labels=tuple(conversation.labels or ()) if conversation else (),
        site_id=str(visitor.site_id),
    )


UNREAD: Any = object()  # a tenant's settings not yet read (None is a tenant without settings)


def _settings_of_tenant(session: Session) -> dict[str, Any] | None:
    """The settings of the session's own tenant (by id: row-level security is the second line, not the only one)."""
    return session.scalar(select(Tenant.settings).where(Tenant.id == session.info.get("tenant_id")))


def do_apply_rules(session: Session, conversation_id: uuid.UUID) -> TeamRouted | None:
    """A new conversation without a team: the first rule that holds gives it its team, recorded as an `assigned`
    event (by routing, naming the rule). Commits. None when it has a team already, is not open, or no rule holds
    (a repeated job changes nothing)."""
    tenant_settings = _settings_of_tenant(session)
    current = stored_rules(tenant_settings)
    if not current:  # the common case: one read of the tenant's row
        session.rollback()
        return None
    conversation = session.scalar(select(Conversation).where(Conversation.id == conversation_id))
    if conversation is None or conversation.team_id is not None or conversation.status != "open":
        session.rollback()
        return None
    visitor = session.get(Visitor, conversation.visitor_id)
    assert visitor is not None
    teams = dict(session.execute(select(Team.id, Team.name)).all())
    live = [r for r in current if _team_id(r) in teams]  # a deleted team's rules never match
    found = rules.first_match(live, facts_of(visitor, conversation))
    if found is None:
        session.rollback()
        return None
    _, rule = found
    number = current.index(rule) + 1
    team_id = _team_id(rule)
    assert team_id is not None
    # Only if nobody gave it a team meanwhile (an agent's transfer wins).
    taken = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.team_id.is_(None))
        .values(team_id=team_id)
        .returning(Conversation.id)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is None:
        session.rollback()
        return None
    event = ConversationEvent(
        conversation_id=conversation_id,
        kind="assigned",
        body="",
        detail={
            "team_id": str(team_id),
            "team_name": teams[team_id],
            "by": "routing",
            "rule": number,
            "rule_id": rule.get("id"),
            "rule_text": rules.describe(rule, teams[team_id]),
        },
        created_at=datetime.now(UTC),
    )
    session.add(event)
    session.flush()
    routed = TeamRouted(conversation_id, team_id, event.id)
    session.commit()
    return routed


def visitor_team(session: Session, visitor: Visitor, tenant_settings: Any = UNREAD) -> uuid.UUID | None:
    """The team the rules would give a conversation this visitor starts now (on their current page; no labels
    yet), or None: for the widget's session, to show that team's business hours. `tenant_settings`: the
    tenant's settings when the caller has read them already."""
    current = stored_rules(_settings_of_tenant(session) if tenant_settings is UNREAD else tenant_settings)
    if not current:  # the common case: no team to look up
        return None
    teams = set(session.scalars(select(Team.id)))
    found = rules.first_match([r for r in current if _team_id(r) in teams], facts_of(visitor))
    return _team_id(found[1]) if found else None


def hours_for_visitor(
    session: Session, visitor: Visitor, tenant_settings: Any = UNREAD, default_schedule: Any = UNREAD
) -> mail_hours.HoursStatus:
    """The business hours that hold this visitor's next conversation (routing's, desk/actions/routing.py): the
    schedule of the team the rules pick, else the tenant's default. What the widget's session should say.
    `tenant_settings` and `default_schedule` (None: the tenant has none): when the caller has read them already."""
    team_id = visitor_team(session, visitor, tenant_settings)
    schedule = schedule_of(session, team_id) if team_id else None
    if schedule is None:
        schedule = schedule_of(session, None) if default_schedule is UNREAD else default_schedule
    return mail_hours.status(schedule)


def _team_id(rule: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(rule.get("team_id")))
    except ValueError:
        return None
