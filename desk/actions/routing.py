"""Assigning conversations to agents, and the queue they wait in (docs/architecture.md, "Routing and the queue").

A conversation joins its team's queue (`queued_at`, the visitor's first message, so the order is arrival order)
when the router first sees it, and whenever routing takes it back from an agent (not opened in time, the agent
went away). `do_drain_queue()` then gives the queue's conversations, oldest first, to the ONLINE agents of the
conversation's team (every agent when it has none), by the tenant's strategy: round robin (assigned least
recently) or least busy (fewest open conversations). No agent gets more open conversations than `max_chats`
(0: no limit); a conversation no agent can take waits, and so does every later one of its team.

One drain at a time per tenant: a transaction-scoped advisory lock, so two routers never count an agent's load
twice and the queue drains in order. Each conversation is assigned by a conditional UPDATE (still open, unassigned
and not locked: SKIP LOCKED): one an agent is taking by hand at that moment (desk/actions/conversations.py locks
the same row) stays the agent's, so the two never both assign it, and a drain never waits on an agent.

Business hours hold a line: outside its team's schedule (or the tenant's default, for a team without one and for
conversations without a team; no schedule at all: always open) a team's conversations stay in line, unassigned and
without a place (`held_conversations`), and the first drain after the hours open routes them in arrival order.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from desk import mail_hours, signals, tenant_settings
from desk.models import Conversation, ConversationEvent, Message, Schedule, TeamMember, Tenant, User

# A drain assigns at most this many conversations; the next one takes the rest.
DRAIN_BATCH = 500


@dataclass(frozen=True)
class Assigned:
    """A conversation routing gave to an agent, and the `assigned` event it recorded."""

    conversation_id: uuid.UUID
    visitor_id: uuid.UUID
    agent_id: uuid.UUID
    event_id: int
    team_id: uuid.UUID | None

    def signal(self) -> dict[str, Any]:
        """What the consoles hear: the same shape as an agent's action (desk/actions/conversations.py), named
        "routed" as the router has always said it (its event in the timeline is an `assigned` one)."""
        return signals.conversation_changed(
            self.conversation_id,
            "routed",
            event_id=self.event_id,
            status="open",
            assignee_id=str(self.agent_id),
            team_id=str(self.team_id) if self.team_id else None,
            by="routing",
        )


def routing_settings(session: Session) -> dict[str, Any]:
    """The tenant's routing section, defaults filled in (the session's own tenant)."""
    stored = session.scalar(select(Tenant.settings).where(Tenant.id == session.info.get("tenant_id")))
    return tenant_settings.effective(stored)["routing"]


def _lock_tenant_routing(session: Session, tenant_id: uuid.UUID) -> None:
    # Until the transaction ends: every drain of this tenant waits for the one running.
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"deskbell.route.{tenant_id}", 0))))


def _open_load(session: Session, agent_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = session.execute(
        select(Conversation.assignee_id, func.count())
        .where(Conversation.status == "open", Conversation.assignee_id.in_(agent_ids))
        .group_by(Conversation.assignee_id)
    ).all()
    return defaultdict(int, {agent: count for agent, count in rows})


def closed_lines(session: Session, team_ids: set[uuid.UUID | None], now: datetime | None = None) -> set[Any]:
    """Of these lines (team ids; None: the tenant's common line), the ones outside business hours now: the team's
    own schedule, else the tenant's default; without either, a line is always open (desk/mail_hours.py)."""
    if not team_ids:
        return set()
    schedules = {s.team_id: s for s in session.scalars(select(Schedule).order_by(Schedule.created_at.desc()))}
    if not schedules:
        return set()
    default = schedules.get(None)
    return {t for t in team_ids if not mail_hours.status(schedules.get(t, default), now).open}


def _waiting() -> Any:
    return select(Conversation.id, Conversation.visitor_id, Conversation.team_id, Conversation.passed_over_id).where(
        Conversation.status == "open", Conversation.assignee_id.is_(None), Conversation.queued_at.is_not(None)
    )


def held_conversations(session: Session) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(conversation, visitor) of the queued conversations whose line is outside business hours: they wait for
    the hours, with no place in line and no estimate (no agent will answer before then)."""
    rows = session.execute(_waiting().order_by(Conversation.queued_at).limit(DRAIN_BATCH)).all()
    closed = closed_lines(session, {r.team_id for r in rows})
    return [(r.id, r.visitor_id) for r in rows if r.team_id in closed]


def do_drain_queue(session: Session, tenant_id: uuid.UUID) -> list[Assigned]:
    """Assign the tenant's queued conversations, oldest first, to online agents with room. Commits.

    Returns what was assigned, for the caller to publish (after the commit). With auto-assign off, nothing is.
    """
    settings = routing_settings(session)
    if not settings["auto_assign"]:
        session.rollback()
        return []
    strategy = settings["strategy"]
    _lock_tenant_routing(session, tenant_id)
    # Read, not locked: only the rows it assigns are written, each by a conditional UPDATE (below).
    waiting = session.execute(
        _waiting().order_by(Conversation.queued_at, Conversation.created_at, Conversation.id).limit(DRAIN_BATCH)
    ).all()
    closed = closed_lines(session, {c.team_id for c in waiting})
    waiting = [c for c in waiting if c.team_id not in closed]  # outside business hours: held until they open
    if not waiting:
        session.commit()
        return []
    agents = session.scalars(
        select(User)
        .where(User.is_active, User.presence == "online")
        .order_by(User.created_at, User.id)
        .execution_options(populate_existing=True)
    ).all()
    load = _open_load(session, [a.id for a in agents])
    members: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for team_id, user_id in session.execute(select(TeamMember.team_id, TeamMember.user_id)).all():
        members[team_id].add(user_id)

    # Plain values, not ORM attributes, in the loop: it runs for every waiting conversation.
    by_id = {a.id: a for a in agents}
    capacity = {a.id: a.max_chats for a in agents}
    recent = {a.id: a.last_assigned_at or datetime.min.replace(tzinfo=UTC) for a in agents}
    seniority = {a.id: (a.created_at, str(a.id)) for a in agents}
    room = {a.id for a in agents if capacity[a.id] <= 0 or load[a.id] < capacity[a.id]}

    def rank(agent_id: uuid.UUID, passed_over_id: uuid.UUID | None) -> tuple[Any, ...]:
        # The agent who let this one go unopened is asked last; then the strategy; then the oldest account.
        if strategy == "least_busy":
            return (agent_id == passed_over_id, load[agent_id], recent[agent_id], seniority[agent_id])
        return (agent_id == passed_over_id, recent[agent_id], seniority[agent_id])

    now = datetime.now(UTC)
    assigned: list[tuple[Any, User, ConversationEvent]] = []
    for conversation in waiting:
        if not room:
            break  # every online agent is full: the rest of every line waits
        pool = room if conversation.team_id is None else room & members[conversation.team_id]
        if not pool:
            continue  # this team's line waits for room; the others may still move
        agent = by_id[min(pool, key=lambda a: rank(a, conversation.passed_over_id))]
        # Only if it is still waiting, and not locked: an agent taking it by hand holds its row until they commit
        # (then it is theirs). Skipping, not waiting, so a drain never waits on a row while it holds agents' rows.
        still_waiting = (
            select(Conversation.id)
            .where(Conversation.id == conversation.id, Conversation.status == "open")
            .where(Conversation.assignee_id.is_(None))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        # no_autoflush: the events and the agents' rows are written once, at the end, not before each UPDATE.
        with session.no_autoflush:
            taken = session.execute(
                update(Conversation)
                .where(Conversation.id == still_waiting)
                .values(assignee_id=agent.id, assigned_at=now, opened_at=None, queued_at=None)
                .returning(Conversation.id)
                .execution_options(synchronize_session=False)
            ).first()
        if taken is None:
            continue
        agent.last_assigned_at = recent[agent.id] = now
        load[agent.id] += 1
        if 0 < capacity[agent.id] <= load[agent.id]:
            room.discard(agent.id)
        event = ConversationEvent(
            conversation_id=conversation.id,
            kind="assigned",
            body="",
            detail={"assignee_id": str(agent.id), "assignee_name": agent.name, "by": "routing", "strategy": strategy},
            created_at=now,
        )
        session.add(event)
        assigned.append((conversation, agent, event))
    session.flush()
    result = [Assigned(c.id, c.visitor_id, a.id, e.id, c.team_id) for c, a, e in assigned]
    session.commit()
    return result


def do_enqueue(session: Session, conversation_id: uuid.UUID) -> bool:
    """Put an open, unassigned conversation in its team's queue, in the place its first message gives it. Does
    not commit. False when it needs no routing (gone, not open, already assigned)."""
    queued = session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            Conversation.status == "open",
            Conversation.assignee_id.is_(None),
        )
        .values(queued_at=func.coalesce(Conversation.queued_at, Conversation.created_at))
        .returning(Conversation.id)
    ).first()
    return queued is not None


def do_queue_conversation(session: Session, conversation_id: uuid.UUID) -> uuid.UUID | None:
    """A new conversation (the router's job): put it in its line, and commit. Returns its tenant, to drain, or
    None when it needs no routing. Repeated jobs are harmless: an assigned or resolved conversation is left alone.
    """
    tenant_id = session.scalar(select(Conversation.tenant_id).where(Conversation.id == conversation_id))
    # With auto-assign off no line forms: agents take conversations from the Unassigned list.
    if tenant_id is None or not routing_settings(session)["auto_assign"] or not do_enqueue(session, conversation_id):
        session.rollback()
        return None
    session.commit()
    return tenant_id


def do_route_conversation(session: Session, conversation_id: uuid.UUID) -> tuple[User | None, list[Assigned]]:
    """A new conversation: queue it, then drain the tenant's queue. Commits.

    Returns the agent it went to (None: it waits, or needed no routing) and everything the drain assigned.
    """
    tenant_id = do_queue_conversation(session, conversation_id)
    if tenant_id is None:
        return None, []
    assigned = do_drain_queue(session, tenant_id)
    mine = next((a for a in assigned if a.conversation_id == conversation_id), None)
    return (session.get(User, mine.agent_id) if mine else None), assigned


def unanswered_since_assigned() -> Any:
    """SQL: no agent has written in the conversation since routing assigned it."""
    return ~exists().where(
        Message.conversation_id == Conversation.id,
        Message.sender == "agent",
        Message.created_at >= Conversation.assigned_at,
    )


@dataclass(frozen=True)
class Requeued:
    """A conversation routing took back from its agent, and the `unassigned` event it recorded."""

    conversation_id: uuid.UUID
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    event_id: int
    team_id: uuid.UUID | None

    def signal(self) -> dict[str, Any]:
        return signals.conversation_changed(
            self.conversation_id,
            "unassigned",
            event_id=self.event_id,
            status="open",
            assignee_id=None,
            team_id=str(self.team_id) if self.team_id else None,
            by="routing",
        )


def take_back(session: Session, where: Any, reason: str) -> list[Requeued]:
    """Unassign the routed, unanswered open conversations `where` selects, back to the head of their queue (their
    first message's place), recording why; the agent is asked last for them next time. Does not commit.

    Rows another transaction holds are skipped (SKIP LOCKED): an agent acting on one right now keeps it.
    """
    chosen = (
        select(Conversation.id)
        .where(
            Conversation.status == "open",
            Conversation.assignee_id.is_not(None),
            Conversation.assigned_at.is_not(None),
            unanswered_since_assigned(),
            where,
        )
        .limit(DRAIN_BATCH)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(Conversation)
        .where(Conversation.id.in_(chosen))
        .values(
            passed_over_id=Conversation.assignee_id,
            assignee_id=None,
            assigned_at=None,
            opened_at=None,
            queued_at=Conversation.created_at,
        )
        .returning(Conversation.id, Conversation.tenant_id, Conversation.passed_over_id, Conversation.team_id)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        return []
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_({r.passed_over_id for r in rows}))).all())
    now = datetime.now(UTC)
    requeued = []
    for row in rows:
        event = ConversationEvent(
            tenant_id=row.tenant_id,
            conversation_id=row.id,
            kind="unassigned",
            body="",
            detail={
                "previous_id": str(row.passed_over_id),
                "previous_name": names.get(row.passed_over_id, "the agent"),
                "by": "routing",
                "reason": reason,
            },
            created_at=now,
        )
        session.add(event)
        session.flush()
        requeued.append(Requeued(row.id, row.tenant_id, row.passed_over_id, event.id, row.team_id))
    return requeued


def do_requeue_absent_agent(session: Session, user_id: uuid.UUID) -> list[Requeued]:
    """The agent went away or offline: their routed chats nobody has answered yet go back to the queue. Commits.

    Checks the agent's presence now, not as the event said: one who came back meanwhile keeps their chats."""
    gone = select(User.id).where(User.id == user_id, User.presence != "online").scalar_subquery()
    requeued = take_back(session, Conversation.assignee_id == gone, "agent away")
    session.commit()
    return requeued


def do_mark_opened(session: Session, conversation_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """The assignee opened the conversation: routing will not take it back for being unopened. Commits. True the
    first time. Anyone else opening it changes nothing."""
    opened = session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            Conversation.assignee_id == user_id,
            Conversation.opened_at.is_(None),
        )
        .values(opened_at=func.now())
        .returning(Conversation.id)
    ).first()
    session.commit()
    return opened is not None


def do_reopen_idle(session: Session, conversation_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Conversations resolved for being idle whose visitor wrote again: reopen them, when the tenant's
    `routing.reopen_after_idle` says so (the default), instead of starting a new one. Does not commit.

    For the store action (desk/actions/messages.py; here, not in desk/actions/lapses.py, which imports that), with
    each visitor's newest conversation when the sweeper resolved it, under the visitor rows' locks. Returns the
    reopened conversations.
    """
    # The tenant's settings only when there is something to reopen: the usual batch has nothing.
    if not conversation_ids or not routing_settings(session).get("reopen_after_idle", True):
        return []
    reopened = []
    now = datetime.now(UTC)
    for conversation in session.scalars(select(Conversation).where(Conversation.id.in_(conversation_ids))):
        conversation.status = "open"
        conversation.resolved_at = None
        conversation.auto_resolved_at = None
        session.add(
            ConversationEvent(
                conversation_id=conversation.id,
                kind="reopened",
                detail={"previous": "resolved", "reason": "the visitor wrote again"},
                created_at=now,
            )
        )
        reopened.append(conversation.id)
    session.flush()
    return reopened
