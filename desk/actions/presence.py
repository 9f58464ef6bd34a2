"""Agents' presence and the sweeps behind it (docs/architecture.md, "The console: presence and the sweeper").

An agent is `online`, `away` or `offline`. They set it by hand (the console's menu; logging in sets `online`,
logging out `offline`); every open console tab sends a heartbeat that stamps `users.presence_seen_at`; and the
sweeper (workers/sweeper.py) turns an online agent away once no heartbeat came for the grace period. Routing
(desk/actions/routing.py) assigns only to `online` agents.

A heartbeat must bring back an agent the sweeper turned away, and must never undo an away or offline the agent
chose. There is no column saying which away is which, so the sweeper says it with the one it has: it clears
`presence_seen_at` when it turns an agent away. Hence:

- `away` with no `presence_seen_at`: the sweeper did it; the agent's next heartbeat puts them back `online`;
- `away` with a time: the agent chose it (setting presence by hand stamps `presence_seen_at`); it stays;
- `offline`: set by hand or by logging out, never changed by a heartbeat;
- `online` with no `presence_seen_at`: never heard from (set online by a script, or before heartbeats existed);
  the sweeper leaves it alone, as it turns away only agents it has heard from and then lost.

The cost: while an agent is auto-away their last heartbeat time is gone (it is older than the grace, nothing
more). A column `presence_auto boolean` would keep both; until then this keeps the schema as it is.

Everything here is a single UPDATE per step, so it takes no lock longer than one statement; the sweeps are
safe with any number of workers at once (each row changes in one of them, and only that one reports it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from desk import signals
from desk.actions.lapses import update_with_events
from desk.models import PRESENCE, Conversation, User

# A sweep changes at most this many rows per statement; the next sweep takes the rest.
SWEEP_BATCH = 500
SNOOZE_ENDED = {"reason": "snooze ended"}


def do_set_presence(session: Session, user_id: uuid.UUID, presence: str) -> bool:
    """The agent chose `presence` (or logged in or out). Commits. True when it changed.

    Stamps `presence_seen_at`, which marks the choice as the agent's own: a heartbeat never turns it back.
    """
    if presence not in PRESENCE:
        raise ValueError(f"presence must be one of {', '.join(PRESENCE)}")
    before = session.scalar(select(User.presence).where(User.id == user_id).with_for_update())
    if before is None:
        session.rollback()
        return False
    session.execute(update(User).where(User.id == user_id).values(presence=presence, presence_seen_at=func.now()))
    session.commit()
    # Issue 8: an agent going away or offline hands their waiting chats back to the queue, and one coming
    # online takes from it; the caller publishes the change and routing will listen for it.
    return before != presence


def do_heartbeat(session: Session, user_id: uuid.UUID) -> tuple[str | None, bool]:
    """A console tab of the agent is open. Commits. Returns (presence, whether the heartbeat brought them back).

    The common case is one UPDATE of one row; only an agent the sweeper turned away takes a second one.
    """
    stamp = update(User).where(User.id == user_id).values(presence_seen_at=func.now()).returning(User.presence)
    presence = session.scalar(stamp.where(User.presence_seen_at.is_not(None)))
    back = False
    if presence is None:
        # Turned away by the sweeper (or never heard from). Under concurrent heartbeats the row lock makes the
        # second re-check this condition after the first has committed, so only one of them reports the change.
        presence = session.scalar(
            update(User)
            .where(User.id == user_id, User.presence == "away", User.presence_seen_at.is_(None))
            .values(presence="online", presence_seen_at=func.now())
            .returning(User.presence)
        )
        back = presence is not None
        if not back:
            presence = session.scalar(stamp)
    session.commit()
    return presence, back


def do_sweep_presence(session: Session, grace: timedelta) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Turn away the online agents of every tenant silent for longer than `grace`. Commits.

    Returns (user id, tenant id) of each agent turned away, for the caller to publish. Runs in a
    `system_session()`: the sweep crosses tenants on purpose. One UPDATE over rows locked with SKIP LOCKED: two
    sweepers at once change each row once (a row the other holds is skipped; one it has committed is re-checked
    and no longer matches).
    """
    silent = (
        select(User.id)
        .where(User.presence == "online", User.presence_seen_at < func.now() - grace)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(User)
        .where(User.id.in_(silent))
        # No presence_seen_at: this away is the sweeper's, so a heartbeat may undo it (the module's docstring).
        .values(presence="away", presence_seen_at=None)
        .returning(User.id, User.tenant_id)
    ).all()
    session.commit()
    # Issue 8: these agents' waiting chats go back to the queue.
    return [(row.id, row.tenant_id) for row in rows]


@dataclass(frozen=True)
class Woken:
    """A snoozed conversation the sweeper reopened, and the `reopened` event it recorded."""

    conversation_id: uuid.UUID
    tenant_id: uuid.UUID
    event_id: int
    assignee_id: uuid.UUID | None
    team_id: uuid.UUID | None

    def signal(self) -> dict[str, Any]:
        """What the consoles hear: the same shape as an agent's action (desk/actions/conversations.py)."""
        return signals.conversation_changed(
            self.conversation_id,
            "reopened",
            event_id=self.event_id,
            status="open",
            assignee_id=str(self.assignee_id) if self.assignee_id else None,
            team_id=str(self.team_id) if self.team_id else None,
            **SNOOZE_ENDED,
        )


def do_wake_snoozed(session: Session) -> list[Woken]:
    """Reopen the snoozed conversations of every tenant whose `snoozed_until` has passed. Commits.

    Each gets a `reopened` event ("snooze ended") in its timeline; the caller publishes `Woken.signal()`. Runs
    in a `system_session()`, across tenants on purpose. Rows another sweeper holds are skipped (SKIP LOCKED) and
    rows it has reopened no longer match, so each conversation wakes once.
    """
    due = (
        select(Conversation.id)
        .where(Conversation.status == "snoozed", Conversation.snoozed_until <= func.now())
        .order_by(Conversation.snoozed_until)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows, event_of = update_with_events(
        session,
        update(Conversation)
        .where(Conversation.id.in_(due))
        .values(status="open", snoozed_until=None)
        .returning(Conversation.id, Conversation.tenant_id, Conversation.assignee_id, Conversation.team_id),
        "reopened",
        lambda _: {**SNOOZE_ENDED, "previous": "snoozed"},
    )
    return [Woken(row.id, row.tenant_id, event_of[row.id], row.assignee_id, row.team_id) for row in rows]
