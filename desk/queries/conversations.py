"""Reads of visitor threads: the visitor protocol's replay, and how far agents have read.

The console reads conversations through inbox.py (the lists) and timeline.py (a pane).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ScalarSelect, Select, func, select

from desk.models import Conversation, Message, Visitor


def thread_after(visitor_id: uuid.UUID, after_seq: int, limit: int = 500) -> Select[tuple[Message]]:
    """A visitor thread's messages with seq > after_seq, in order: the replay for `hello` and reconnects."""
    return (
        select(Message)
        .where(Message.visitor_id == visitor_id, Message.seq > after_seq)
        .order_by(Message.seq)
        .limit(limit)
    )


def message_by_client_id(visitor_id: uuid.UUID, client_id: str) -> Select[tuple[Message]]:
    return select(Message).where(Message.visitor_id == visitor_id, Message.client_id == client_id)


def visitor_read_seq(visitor_id: uuid.UUID) -> Select[tuple[int]]:
    """The highest seq of a visitor's thread that an agent has read, in any of its conversations (0: none)."""
    return select(func.coalesce(func.max(Conversation.agent_read_seq), 0)).where(Conversation.visitor_id == visitor_id)


def open_conversation_id(visitor_id: uuid.UUID) -> Select[tuple[uuid.UUID]]:
    """The visitor's unresolved conversation, the one its next message joins (as the store worker picks)."""
    return (
        select(Conversation.id)
        .where(Conversation.visitor_id == visitor_id, Conversation.status != "resolved")
        .order_by(Conversation.created_at.desc())
        .limit(1)
    )


def thread_state(visitor_id: uuid.UUID) -> Select[tuple[int | None, uuid.UUID | None, int]]:
    """(the thread's last seq or None for no such visitor, its open conversation, how far agents have read) in one
    statement: what `welcome` says."""
    return select(*thread_state_columns(visitor_id))


def thread_state_columns(visitor_id: Any, tenant_id: Any = None) -> tuple[ScalarSelect[Any], ...]:
    """`thread_state`'s three columns, for a statement that reads more beside them (a new socket's, issue 10).
    `tenant_id` (a value or bind parameter) names the tenant in each, for a statement run in Core, which the ORM
    session's tenant criteria do not reach (desk/db.py)."""
    visitor = select(Visitor.last_seq).where(Visitor.id == visitor_id)
    conversation = open_conversation_id(visitor_id)
    read = visitor_read_seq(visitor_id)
    if tenant_id is not None:
        visitor = visitor.where(Visitor.tenant_id == tenant_id)
        conversation = conversation.where(Conversation.tenant_id == tenant_id)
        read = read.where(Conversation.tenant_id == tenant_id)
    return visitor.scalar_subquery(), conversation.scalar_subquery(), read.scalar_subquery()
