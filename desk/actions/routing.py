"""Assigning conversations to agents: round robin over the tenant's online agents (docs/architecture.md, step 6)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.models import Conversation, User


def do_route_conversation(session: Session, conversation_id: uuid.UUID) -> User | None:
    """Give an open, unassigned conversation to the online agent who was assigned least recently. Commits.

    Returns the assignee, or None when the conversation needs no routing or no agent is online. The
    conversation row is locked, so two routers racing on it assign it once; agents are taken with SKIP
    LOCKED, so two routers racing on different conversations take different agents.
    """
    # populate_existing: decide on the locked row, not on a copy this session may have loaded before.
    conversation = session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if conversation is None or conversation.status != "open" or conversation.assignee_id is not None:
        session.rollback()
        return None
    agent = session.scalar(
        select(User)
        .where(User.is_active, User.presence == "online")
        .order_by(User.last_assigned_at.asc().nulls_first(), User.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if agent is None:
        session.rollback()
        return None
    conversation.assignee_id = agent.id
    agent.last_assigned_at = datetime.now(UTC)
    session.commit()
    return agent
