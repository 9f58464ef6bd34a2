"""A conversation as the console shows it: its messages and its events (notes, assignments...) in time order.

Only agents read this. The visitor's thread (desk/queries/conversations.py) holds messages alone.
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.models import ConversationEvent, Message

LATEST = 1000


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: exactly one of message and event is set."""

    at: datetime
    message: Message | None = None
    event: ConversationEvent | None = None


def timeline(
    session: Session, conversation_id: uuid.UUID, after_seq: int = 0, after_event: int = 0, limit: int = LATEST
) -> list[Entry]:
    """The conversation's messages with seq > after_seq and events with id > after_event, oldest first.

    With both cursors at 0 it is the newest `limit` of each (a page); with cursors, what came after them (a
    pane catching up).
    """
    messages = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.seq > after_seq)
        .order_by(Message.seq.desc())
        .limit(limit)
    ).all()
    events = session.scalars(
        select(ConversationEvent)
        .where(ConversationEvent.conversation_id == conversation_id, ConversationEvent.id > after_event)
        .order_by(ConversationEvent.id.desc())
        .limit(limit)
    ).all()
    # Messages keep their seq order (the order they were accepted; a batch shares one created_at, and two
    # workers' clocks may disagree); events fall in between by time.
    return list(
        heapq.merge(
            [Entry(m.created_at, message=m) for m in reversed(messages)],
            [Entry(e.created_at, event=e) for e in reversed(events)],
            key=lambda e: e.at,
        )
    )
