"""Read receipts: how far agents have read a visitor's thread (docs/architecture.md, "Typing and read receipts")."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from desk.models import Conversation, Message


def do_mark_read(session: Session, conversation_id: uuid.UUID, seq: int) -> int | None:
    """Move the conversation's `agent_read_seq` up to `seq` (at most its newest message's seq). Commits.

    Returns the new position when it moved, None when it did not (already read that far, or no such
    conversation): the caller publishes a `read` event only for a move. The row is locked, so two agents
    marking at once never move it back.
    """
    newest = session.scalar(select(func.max(Message.seq)).where(Message.conversation_id == conversation_id)) or 0
    conversation = session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    seq = min(seq, newest)
    if conversation is None or seq <= conversation.agent_read_seq:
        session.rollback()
        return None
    # Counted before anything is set, so the row is updated once, at the commit. A second UPDATE of a row this
    # transaction already updated (the count's autoflush made the first) makes PostgreSQL check its foreign keys
    # again, which takes a share lock on the visitor: the store worker locks the visitor first and then updates the
    # conversation this transaction has locked, and the two deadlocked (seen in a CI run).
    unread = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.conversation_id == conversation_id, Message.sender == "visitor", Message.seq > seq)
    )
    conversation.agent_read_seq = seq
    conversation.unread_count = unread
    session.commit()
    return seq
