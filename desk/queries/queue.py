"""Where each waiting visitor is in line, and how long they may wait (docs/architecture.md, "Routing and the
queue"). Read in the tenant's session after every drain; the router publishes it to the visitors.

The estimate: an agent's slot frees every `handling / slots` seconds, where `handling` is the mean time from
assignment to resolution of the tenant's most recently resolved conversations (RECENT_RESOLVED of the last
RECENT_HOURS) and `slots` the `max_chats` of the team's online agents; the visitor at position p waits about
p × handling / slots. No history, or no agent online: no estimate (None), and the widget shows the position only.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from desk.actions.routing import DRAIN_BATCH
from desk.models import Conversation, TeamMember, User

RECENT_RESOLVED = 100
RECENT_HOURS = 24


@dataclass(frozen=True)
class Place:
    conversation_id: uuid.UUID
    visitor_id: uuid.UUID
    position: int  # 1: next in line
    wait_seconds: int | None


def handling_seconds(session: Session) -> float | None:
    """Mean seconds from assignment (or creation, when assigned by hand) to resolution, recently."""
    started = func.coalesce(Conversation.assigned_at, Conversation.created_at)
    recent = (
        select((func.extract("epoch", Conversation.resolved_at - started)).label("seconds"))
        .where(
            Conversation.status == "resolved",
            Conversation.resolved_at > func.now() - timedelta(hours=RECENT_HOURS),
        )
        .order_by(Conversation.resolved_at.desc())
        .limit(RECENT_RESOLVED)
        .subquery()
    )
    mean = session.scalar(select(func.avg(recent.c.seconds)))
    return float(mean) if mean is not None and mean > 0 else None


def _slots(session: Session) -> tuple[int, dict[uuid.UUID, int]]:
    """Chat slots of the online agents: all of them, and per team."""
    online = select(User.id, User.max_chats).where(User.is_active, User.presence == "online")
    agents: dict[uuid.UUID, int] = {user_id: max_chats for user_id, max_chats in session.execute(online).all()}
    per_team: dict[uuid.UUID, int] = defaultdict(int)
    for team_id, user_id in session.execute(select(TeamMember.team_id, TeamMember.user_id)).all():
        if user_id in agents:
            per_team[team_id] += agents[user_id]
    return sum(agents.values()), per_team


def queue_places(session: Session) -> list[Place]:
    """Every queued conversation of the session's tenant with its place in its team's line, oldest first."""
    rows = session.execute(
        select(Conversation.id, Conversation.visitor_id, Conversation.team_id)
        .where(Conversation.status == "open", Conversation.assignee_id.is_(None), Conversation.queued_at.is_not(None))
        .order_by(Conversation.queued_at, Conversation.created_at, Conversation.id)
        .limit(DRAIN_BATCH)
    ).all()
    if not rows:
        return []
    handling = handling_seconds(session)
    everyone, per_team = _slots(session)
    seen: dict[uuid.UUID | None, int] = defaultdict(int)
    places = []
    for row in rows:
        seen[row.team_id] += 1
        position = seen[row.team_id]
        slots = everyone if row.team_id is None else per_team[row.team_id]
        wait = math.ceil(position * handling / slots) if handling and slots > 0 else None
        places.append(Place(row.id, row.visitor_id, position, wait))
    return places
