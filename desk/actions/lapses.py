"""What the sweeper does when time runs out on a conversation (docs/architecture.md, "Routing and the queue"):

- an agent did not open a conversation routing gave them within the open timeout: it goes back to the head of
  its queue, and the router gives it to the next agent (desk/actions/routing.py, `take_back`);
- a visitor waited longer than the missed threshold for an agent's reply: the conversation is marked missed
  (`missed_at`, a `missed` event in its timeline, a metric, and `MISSED_HOOKS` for a notification);
- an open or pending conversation had no message for the idle time: resolved, with a system message to the
  visitor.

Each runs in a `system_session()` across tenants, one statement over rows locked with SKIP LOCKED, so any number
of sweepers at once change each row once. Each limit is the tenant's own (`tenants.settings.routing`, key as in
desk.settings.Routing) or the installation's default; 0 turns it off.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, and_, cast, func, insert, select, update
from sqlalchemy.orm import Session

from desk import signals
from desk.actions.messages import Inbound, as_event, do_store_messages
from desk.actions.routing import DRAIN_BATCH, Requeued, take_back
from desk.models import Conversation, ConversationEvent, Tenant, Visitor
from desk.settings import Routing


def tenant_limit(name: str, default: int) -> Any:
    """SQL: the conversation's tenant's own `routing.<name>`, else `default`."""
    own = (
        select(cast(Tenant.settings["routing"][name].astext, Integer))
        .where(Tenant.id == Conversation.tenant_id)
        .scalar_subquery()
    )
    return func.coalesce(own, default)


def _older_than(column: Any, name: str, default: int) -> Any:
    """SQL: the tenant's limit `name` (seconds) is on, and `column` is further in the past than it."""
    limit = tenant_limit(name, default)
    # make_interval(years, months, weeks, days, hours, mins, secs): positional, as SQLAlchemy passes them.
    return and_(limit > 0, column < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, limit))


def update_with_events(
    session: Session, changed: Any, kind: str, detail: Callable[[Any], dict[str, Any]]
) -> tuple[Sequence[Any], dict[uuid.UUID, int]]:
    """Run `changed` (an UPDATE of conversations RETURNING at least their id and tenant_id), record a `kind` event
    with `detail(row)` in the timeline of each, and commit. Returns the rows and each conversation's event id
    (none and {}, rolled back, when nothing changed)."""
    rows = session.execute(changed).all()
    if not rows:
        session.rollback()
        return [], {}
    events = session.execute(
        insert(ConversationEvent).returning(ConversationEvent.conversation_id, ConversationEvent.id),
        [{"tenant_id": r.tenant_id, "conversation_id": r.id, "kind": kind, "detail": detail(r)} for r in rows],
    ).all()
    session.commit()
    return rows, dict(events)


def do_take_back_unopened(session: Session, config: Routing) -> list[Requeued]:
    """Routed conversations their agent has neither opened nor answered within the open timeout. Commits."""
    late = _older_than(Conversation.assigned_at, "open_timeout_seconds", config.open_timeout_seconds)
    requeued = take_back(session, and_(Conversation.opened_at.is_(None), late), "not opened in time")
    session.commit()
    return requeued


@dataclass(frozen=True)
class Missed:
    conversation_id: uuid.UUID
    tenant_id: uuid.UUID
    team_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    event_id: int

    def signal(self) -> dict[str, Any]:
        return signals.conversation_changed(
            self.conversation_id,
            "missed",
            event_id=self.event_id,
            status="open",
            assignee_id=str(self.assignee_id) if self.assignee_id else None,
            team_id=str(self.team_id) if self.team_id else None,
        )


# Called with each conversation marked missed, after the commit (issue 8: e-mail the team's admins). A hook that
# raises is logged by the sweeper; the mark stays.
MISSED_HOOKS: list[Callable[[Missed], None]] = []


def do_mark_missed(session: Session, config: Routing) -> list[Missed]:
    """Open conversations whose visitor has waited past the missed threshold for a reply, once each. Commits."""
    due = (
        select(Conversation.id)
        .where(
            Conversation.status == "open",
            Conversation.missed_at.is_(None),
            Conversation.waiting_since.is_not(None),
            _older_than(Conversation.waiting_since, "missed_after_seconds", config.missed_after_seconds),
        )
        .limit(DRAIN_BATCH)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows, event_of = update_with_events(
        session,
        update(Conversation)
        .where(Conversation.id.in_(due))
        .values(missed_at=func.now())
        .returning(
            Conversation.id,
            Conversation.tenant_id,
            Conversation.team_id,
            Conversation.assignee_id,
            Conversation.waiting_since,
        )
        .execution_options(synchronize_session=False),
        "missed",
        lambda r: {"waiting_since": r.waiting_since.isoformat()},
    )
    return [Missed(r.id, r.tenant_id, r.team_id, r.assignee_id, event_of[r.id]) for r in rows]


@dataclass(frozen=True)
class IdleResolved:
    conversation_id: uuid.UUID
    tenant_id: uuid.UUID
    visitor_id: uuid.UUID
    event_id: int
    assignee_id: uuid.UUID | None
    team_id: uuid.UUID | None
    message: dict[str, Any]  # the system message, as desk.actions.messages.as_event gives it

    def signal(self) -> dict[str, Any]:
        return signals.conversation_changed(
            self.conversation_id,
            "resolved",
            event_id=self.event_id,
            status="resolved",
            assignee_id=str(self.assignee_id) if self.assignee_id else None,
            team_id=str(self.team_id) if self.team_id else None,
            reason="idle",
        )


def idle_text(seconds: int) -> str:
    """The system message an idle conversation closes with."""
    span = f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"
    return f"This conversation was closed after {span} without messages. Write again any time."


def idle_conversations(session: Session, config: Routing) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """(tenant, conversation, idle seconds) of the open and pending conversations idle past their tenant's limit."""
    limit = tenant_limit("idle_resolve_seconds", config.idle_resolve_seconds)
    return [
        (r.tenant_id, r.id, r.seconds)
        for r in session.execute(
            select(Conversation.tenant_id, Conversation.id, limit.label("seconds"))
            .where(
                Conversation.status.in_(("open", "pending")),
                _older_than(Conversation.last_activity_at, "idle_resolve_seconds", config.idle_resolve_seconds),
            )
            .order_by(Conversation.last_activity_at)
            .limit(DRAIN_BATCH)
        ).all()
    ]


def do_resolve_idle(session: Session, conversation_id: uuid.UUID, seconds: int) -> IdleResolved | None:
    """Resolve one idle conversation (in its tenant's session), with a system message in the visitor's thread.
    Commits. None when it moved meanwhile (a message came, an agent resolved it).

    The visitor row is locked first, as the store worker does, so the system message takes the thread's next seq
    and no visitor message slips in between the check and the resolution.
    """
    visitor_id = session.scalar(select(Conversation.visitor_id).where(Conversation.id == conversation_id))
    if visitor_id is None:
        session.rollback()
        return None
    session.scalar(select(Visitor.id).where(Visitor.id == visitor_id).with_for_update())
    conversation = session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    still_idle = session.scalar(
        select(Conversation.id).where(
            Conversation.id == conversation_id,
            Conversation.status.in_(("open", "pending")),
            _older_than(Conversation.last_activity_at, "idle_resolve_seconds", seconds),
        )
    )
    if conversation is None or still_idle is None:
        session.rollback()
        return None
    [stored] = do_store_messages(
        session, [Inbound(visitor_id, f"system:idle:{conversation_id}", idle_text(seconds), sender="system")]
    )
    assert stored is not None and stored.message.conversation_id == conversation_id
    now = datetime.now(UTC)
    previous = conversation.status
    conversation.status = "resolved"
    conversation.resolved_at = now
    conversation.auto_resolved_at = now
    conversation.snoozed_until = None
    event = ConversationEvent(
        conversation_id=conversation_id,
        kind="resolved",
        detail={"previous": previous, "reason": "idle"},
        created_at=now,
    )
    session.add(event)
    session.flush()
    result = IdleResolved(
        conversation_id,
        conversation.tenant_id,
        visitor_id,
        event.id,
        conversation.assignee_id,
        conversation.team_id,
        as_event(stored.message),
    )
    session.commit()
    return result

