"""What agents do to a conversation: assign, transfer, resolve, reopen, snooze, labels, private notes.

docs/architecture.md, "The console: actions and notes". Each action locks the conversation row (so two agents
acting at once get one outcome), records a ConversationEvent (what only agents see), commits, and returns a
`Change`; the caller publishes `Change.signal()` on the tenant's agent events after the commit.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import signals, tenant_settings
from desk.models import Conversation, ConversationEvent, Team, Tenant, User
from desk.protocol import FrameError, validate_body
from desk.settings import Limits

LABEL_CHARS = 40
LABELS_PER_CONVERSATION = 20
_LABEL = re.compile(r"[a-z0-9 _-]+")
# Not in models.CONVERSATION_EVENTS yet (the kinds there cover every other action): "waiting on the visitor".
PENDING = "pending"


class ActionError(Exception):
    """An action refused; `status` is the HTTP status the console answers with, `message` is for the agent."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(ActionError):
    status = 400


class Forbidden(ActionError):
    status = 403


class NotFound(ActionError):
    status = 404


class Conflict(ActionError):
    status = 409


class Unchecked(Enum):
    UNCHECKED = "unchecked"


UNCHECKED = Unchecked.UNCHECKED


@dataclass(frozen=True)
class Change:
    """The conversation after an action, and the event it recorded (None: it was already so, nothing changed)."""

    conversation: Conversation
    event: ConversationEvent | None

    @property
    def changed(self) -> bool:
        return self.event is not None

    def signal(self) -> dict[str, Any] | None:
        """The agent event that tells the other consoles, or None when nothing changed."""
        if self.event is None:
            return None
        c = self.conversation
        return signals.conversation_changed(
            c.id,
            self.event.kind,
            event_id=self.event.id,
            status=c.status,
            assignee_id=str(c.assignee_id) if c.assignee_id else None,
            team_id=str(c.team_id) if c.team_id else None,
        )


# -- helpers ------------------------------------------------------------------------------------------------------


def _lock(session: Session, conversation_id: uuid.UUID) -> Conversation:
    # populate_existing: decide on the locked row, not on a copy this session may have loaded before.
    conversation = session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if conversation is None:
        session.rollback()
        raise NotFound("No such conversation.")
    return conversation


def _user(session: Session, user_id: uuid.UUID | None) -> User | None:
    """An active agent of this session's tenant (the session's scoping hides every other tenant's users)."""
    if user_id is None:
        return None
    return session.scalar(select(User).where(User.id == user_id))


def _actor(session: Session, actor_id: uuid.UUID) -> User:
    actor = _user(session, actor_id)
    if actor is None or not actor.is_active:
        session.rollback()
        raise Forbidden("Your account cannot act on conversations.")
    return actor


def _agent(session: Session, agent_id: uuid.UUID) -> User:
    agent = _user(session, agent_id)
    if agent is None:
        session.rollback()
        raise Invalid("No such agent.")
    if not agent.is_active:
        session.rollback()
        raise Invalid(f"{agent.name} is deactivated and cannot take conversations.")
    return agent


def _team(session: Session, team_id: uuid.UUID) -> Team:
    team = session.scalar(select(Team).where(Team.id == team_id))
    if team is None:
        session.rollback()
        raise Invalid("No such team.")
    return team


def _auto_assign(session: Session) -> bool:
    """The tenant's routing.auto_assign (desk/tenant_settings.py): whether routing's line forms at all."""
    return bool(tenant_settings.effective(session.scalar(select(Tenant.settings)))["routing"]["auto_assign"])


def _text(value: str, limits: Limits, what: str, required: bool = True) -> str:
    """A note or transfer note: what a message may be (desk.protocol.validate_body), so one limit rules both."""
    if not required and not value.strip():
        return ""
    try:
        return validate_body(value, limits).strip()
    except FrameError as exc:
        if exc.code == "message_too_long":
            raise Invalid(f"{what} may be at most {limits.message_chars} characters.") from exc
        if not value.strip():
            raise Invalid(f"{what} is empty: write something first.") from exc
        raise Invalid(f"{what} must be plain text.") from exc


def _record(
    session: Session, conversation: Conversation, actor: User, kind: str, body: str = "", **detail: Any
) -> Change:
    event = ConversationEvent(
        conversation_id=conversation.id,
        kind=kind,
        author_id=actor.id,
        author_name=actor.name,
        body=body,
        detail=detail,
        # Set here, not by the server default, so the returned event has it after the session closes.
        created_at=datetime.now(UTC),
    )
    session.add(event)
    session.commit()
    return Change(conversation, event)


def _unchanged(session: Session, conversation: Conversation) -> Change:
    # Commit, not roll back: it releases the lock and keeps the loaded row usable (a rollback expires it).
    session.commit()
    return Change(conversation, None)


def _ensure_only_open_one(session: Session, conversation: Conversation) -> None:
    """A resolved conversation comes back only if its visitor has no other one going: the visitor's next
    message joins their one unresolved conversation (desk/actions/messages.py)."""
    if conversation.status != "resolved":
        return
    other = session.scalar(
        select(Conversation.id).where(
            Conversation.visitor_id == conversation.visitor_id,
            Conversation.status != "resolved",
            Conversation.id != conversation.id,
        )
    )
    if other is not None:
        session.rollback()
        raise Conflict("This visitor has a newer open conversation: continue there.")


# -- assigning ------------------------------------------------------------------------------------------------------


def do_assign(
    session: Session,
    conversation_id: uuid.UUID,
    actor_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    expected: uuid.UUID | None | Unchecked = UNCHECKED,
) -> Change:
    """Assign the conversation to `agent_id` (None: unassign). Commits.

    `expected` is the assignee the agent saw: when someone else changed it meanwhile the action is refused
    (Conflict), so of two agents taking one unassigned conversation at once exactly one gets it. An agent of
    another tenant, or a deactivated one, is refused.
    """
    actor = _actor(session, actor_id)
    agent = _agent(session, agent_id) if agent_id is not None else None
    conversation = _lock(session, conversation_id)
    if conversation.assignee_id == agent_id:
        return _unchanged(session, conversation)
    if expected is not UNCHECKED and conversation.assignee_id != expected:
        holder = _user(session, conversation.assignee_id)
        session.rollback()
        if holder is None:
            raise Conflict("Unassigned by someone else meanwhile: look again, then choose.")
        raise Conflict(f"Already taken by {holder.name}.")
    previous = _user(session, conversation.assignee_id)
    conversation.assignee_id = agent_id
    conversation.queued_at = None  # out of routing's line: by hand now, given or taken back (desk/actions/routing.py)
    who = {"previous_id": str(previous.id), "previous_name": previous.name} if previous else {}
    if agent is None:
        return _record(session, conversation, actor, "unassigned", **who)
    agent.last_assigned_at = datetime.now(UTC)  # manual assignments count for the round robin too
    return _record(session, conversation, actor, "assigned", assignee_id=str(agent.id), assignee_name=agent.name, **who)


def do_assign_team(
    session: Session, conversation_id: uuid.UUID, actor_id: uuid.UUID, team_id: uuid.UUID | None
) -> Change:
    """Give the conversation to a team (None: to no team). The assigned agent stays. Commits."""
    actor = _actor(session, actor_id)
    team = _team(session, team_id) if team_id is not None else None
    conversation = _lock(session, conversation_id)
    if conversation.team_id == team_id:
        return _unchanged(session, conversation)
    previous = session.scalar(select(Team).where(Team.id == conversation.team_id)) if conversation.team_id else None
    conversation.team_id = team_id
    if team is None:
        assert previous is not None
        return _record(session, conversation, actor, "unassigned", team_id=str(previous.id), team_name=previous.name)
    return _record(session, conversation, actor, "assigned", team_id=str(team.id), team_name=team.name)


def do_transfer(
    session: Session,
    conversation_id: uuid.UUID,
    actor_id: uuid.UUID,
    *,
    agent_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
    note: str = "",
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, never mutated
) -> Change:
    """Hand the conversation to another agent, or to a team, with a note for them, stored as the event's body.
    Commits.

    To an agent: it leaves routing's line. To a team: the assignee is cleared and, with auto-assign on, it joins
    the end of that team's line (`queued_at` now), so routing gives it to a member of the team with room, the
    transferring agent last (desk/actions/routing.py); with auto-assign off the team's agents take it by hand."""
    if (agent_id is None) == (team_id is None):
        raise Invalid("Choose an agent or a team to transfer to.")
    note = _text(note, limits, "The transfer note", required=False)
    actor = _actor(session, actor_id)
    agent = _agent(session, agent_id) if agent_id is not None else None
    team = _team(session, team_id) if team_id is not None else None
    conversation = _lock(session, conversation_id)
    conversation.queued_at = None
    previous = _user(session, conversation.assignee_id)
    source = {"from_id": str(previous.id), "from_name": previous.name} if previous else {}
    if agent is not None:
        if conversation.assignee_id == agent.id:
            session.rollback()
            raise Invalid(f"It is already with {agent.name}.")
        conversation.assignee_id = agent.id
        agent.last_assigned_at = datetime.now(UTC)
        target = {"to": "agent", "to_id": str(agent.id), "to_name": agent.name}
    else:
        assert team is not None
        if conversation.team_id == team.id and conversation.assignee_id is None:
            session.rollback()
            raise Invalid(f"It is already with {team.name}.")
        conversation.team_id = team.id
        conversation.assignee_id = None
        if conversation.status == "open" and _auto_assign(session):
            now = datetime.now(UTC)
            conversation.queued_at, conversation.assigned_at, conversation.opened_at = now, None, None
            conversation.passed_over_id = previous.id if previous else None
        target = {"to": "team", "to_id": str(team.id), "to_name": team.name}
    return _record(session, conversation, actor, "transferred", note, **source, **target)


# -- status ---------------------------------------------------------------------------------------------------------


def do_resolve(session: Session, conversation_id: uuid.UUID, actor_id: uuid.UUID) -> Change:
    """Done: the visitor's next message starts a new conversation. Commits."""
    actor = _actor(session, actor_id)
    conversation = _lock(session, conversation_id)
    if conversation.status == "resolved":
        return _unchanged(session, conversation)
    previous = conversation.status
    conversation.status = "resolved"
    conversation.resolved_at = datetime.now(UTC)
    conversation.snoozed_until = None
    conversation.queued_at = None  # a waiting one resolved by hand leaves the line for good
    return _record(session, conversation, actor, "resolved", previous=previous)


def do_reopen(session: Session, conversation_id: uuid.UUID, actor_id: uuid.UUID) -> Change:
    """Back to open (from resolved, pending or snoozed). Commits."""
    actor = _actor(session, actor_id)
    conversation = _lock(session, conversation_id)
    if conversation.status == "open":
        return _unchanged(session, conversation)
    _ensure_only_open_one(session, conversation)
    previous = conversation.status
    conversation.status = "open"
    conversation.resolved_at = None
    conversation.snoozed_until = None
    return _record(session, conversation, actor, "reopened", previous=previous)


def do_snooze(session: Session, conversation_id: uuid.UUID, actor_id: uuid.UUID, until: datetime) -> Change:
    """Hide the conversation until `until` (a time zone aware moment in the future) or the visitor's next
    message, whichever comes first. The wake-up at `until` is the sweeper's (workers/sweeper.py). Commits."""
    if until.tzinfo is None:
        raise Invalid("The snooze time needs a time zone.")
    if until <= datetime.now(UTC):
        raise Invalid("Snooze until a time in the future.")
    actor = _actor(session, actor_id)
    conversation = _lock(session, conversation_id)
    if conversation.status == "snoozed" and conversation.snoozed_until == until:
        return _unchanged(session, conversation)
    _ensure_only_open_one(session, conversation)
    previous = conversation.status
    conversation.status = "snoozed"
    conversation.snoozed_until = until.astimezone(UTC)
    conversation.resolved_at = None
    return _record(session, conversation, actor, "snoozed", until=until.astimezone(UTC).isoformat(), previous=previous)


def do_set_pending(session: Session, conversation_id: uuid.UUID, actor_id: uuid.UUID) -> Change:
    """Waiting on the visitor: their next message opens it again (desk/actions/messages.py). Commits."""
    actor = _actor(session, actor_id)
    conversation = _lock(session, conversation_id)
    if conversation.status == "pending":
        return _unchanged(session, conversation)
    _ensure_only_open_one(session, conversation)
    previous = conversation.status
    conversation.status = "pending"
    conversation.snoozed_until = None
    conversation.resolved_at = None
    return _record(session, conversation, actor, PENDING, previous=previous)


def snooze_preset(preset: str, now: datetime, zone: tzinfo) -> datetime:
    """The moment a snooze preset names, in the agent's time zone: "1h", "tomorrow" (9:00) or "next-week"
    (Monday 9:00)."""
    local = now.astimezone(zone)
    if preset == "1h":
        return now + timedelta(hours=1)
    if preset == "tomorrow":
        day = local.date() + timedelta(days=1)
    elif preset == "next-week":
        day = local.date() + timedelta(days=7 - local.weekday())
    else:
        raise Invalid("Choose a snooze time.")
    return datetime.combine(day, time(9, 0), tzinfo=zone)


# -- labels ---------------------------------------------------------------------------------------------------------


def normalise_label(value: str) -> str:
    """Lower case, trimmed, inner spaces collapsed: "  Billing  Issue " is "billing issue"."""
    label = " ".join(value.lower().split())
    if not label:
        raise Invalid("A label cannot be empty.")
    if len(label) > LABEL_CHARS:
        raise Invalid(f"A label may be at most {LABEL_CHARS} characters.")
    if not _LABEL.fullmatch(label):
        raise Invalid("A label may hold letters a–z, digits, spaces, _ and -.")
    return label


def do_add_label(session: Session, conversation_id: uuid.UUID, actor_id: uuid.UUID, label: str) -> Change:
    label = normalise_label(label)
    actor = _actor(session, actor_id)
    conversation = _lock(session, conversation_id)
    if label in conversation.labels:
        return _unchanged(session, conversation)
    if len(conversation.labels) >= LABELS_PER_CONVERSATION:
        session.rollback()
        raise Invalid(f"A conversation may have at most {LABELS_PER_CONVERSATION} labels.")
    conversation.labels = [*conversation.labels, label]
    return _record(session, conversation, actor, "labelled", added=label)


def do_remove_label(session: Session, conversation_id: uuid.UUID, actor_id: uuid.UUID, label: str) -> Change:
    label = normalise_label(label)
    actor = _actor(session, actor_id)
    conversation = _lock(session, conversation_id)
    if label not in conversation.labels:
        return _unchanged(session, conversation)
    conversation.labels = [x for x in conversation.labels if x != label]
    return _record(session, conversation, actor, "labelled", removed=label)


# -- notes ----------------------------------------------------------------------------------------------------------


def do_add_note(
    session: Session,
    conversation_id: uuid.UUID,
    actor_id: uuid.UUID,
    body: str,
    client_id: str | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, never mutated
) -> Change:
    """A private note: an event in the console's timeline, never a message, so it never reaches the visitor.

    `client_id` (the composer's) makes a retried post harmless: the note already written is returned.
    """
    body = _text(body, limits, "The note")
    actor = _actor(session, actor_id)
    conversation = _lock(session, conversation_id)
    if client_id:
        written = session.scalar(
            select(ConversationEvent).where(
                ConversationEvent.conversation_id == conversation.id,
                ConversationEvent.kind == "note",
                ConversationEvent.author_id == actor.id,
                ConversationEvent.detail["client_id"].astext == client_id,
            )
        )
        if written is not None:
            session.commit()
            return Change(conversation, written)
        return _record(session, conversation, actor, "note", body, client_id=client_id)
    return _record(session, conversation, actor, "note", body)
