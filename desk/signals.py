"""Typing and read events: presence-like signals on plain NATS, never queued in JetStream.

Their subjects are desk/subjects.py's; how they travel is in docs/architecture.md ("Typing and read receipts").
A lost typing event only hides an indicator for a few seconds; a read position is stored first
(`conversations.agent_read_seq`), so a visitor who missed the event gets it in the next `welcome`.
"""

from __future__ import annotations

import uuid
from typing import Any

TYPING = "typing"
READ = "read"
CONVERSATION = "conversation"
PRESENCE = "presence"
QUEUE = "queue"
# The events on a visitor's subject that become frames of their own (desk.protocol.signal_frame).
VISITOR_SIGNALS = (TYPING, READ, QUEUE)


def visitor_typing(visitor_id: uuid.UUID | str, conversation_id: uuid.UUID | str | None) -> dict[str, Any]:
    """On `agent_events(tenant)`: a visitor is typing (the conversation is null before their first message)."""
    return {
        "kind": TYPING,
        "visitor_id": str(visitor_id),
        "conversation_id": str(conversation_id) if conversation_id else None,
    }


def agent_typing(author: str | None) -> dict[str, Any]:
    """On `visitor_events(tenant, visitor)`: an agent is typing to this visitor."""
    return {"kind": TYPING, "author": author}


def read(conversation_id: uuid.UUID | str, seq: int) -> dict[str, Any]:
    """On `visitor_events(tenant, visitor)`: an agent has read the visitor's thread up to `seq`."""
    return {"kind": READ, "conversation_id": str(conversation_id), "seq": seq}


def conversation_changed(conversation_id: uuid.UUID | str, change: str, **detail: Any) -> dict[str, Any]:
    """On `agent_events(tenant)`: a conversation changed besides a new message (assigned, resolved, a note...).

    Consoles refresh their lists and the conversation's pane; `change` says what (a ConversationEvent kind or
    "routed"), `detail` carries ids such as assignee_id.
    """
    return {"kind": CONVERSATION, "conversation_id": str(conversation_id), "change": change, **detail}


def presence_changed(user_id: uuid.UUID | str, presence: str) -> dict[str, Any]:
    """On `agent_events(tenant)`: an agent went online, away or offline (by hand or by the presence sweeper)."""
    return {"kind": PRESENCE, "user_id": str(user_id), "presence": presence}


def queue_position(conversation_id: uuid.UUID | str, position: int, wait_seconds: int | None) -> dict[str, Any]:
    """On `visitor_events(tenant, visitor)`: where the visitor's conversation is in its team's queue (1: next),
    0 once an agent has it; `wait_seconds` is the estimate, None when there is nothing to estimate from
    (desk/actions/queue.py)."""
    return {
        "kind": QUEUE,
        "conversation_id": str(conversation_id),
        "position": position,
        "wait_seconds": wait_seconds,
    }


# On `access_events(tenant)` (web/edge/access.py): connections to cut at once. `user_id` set: that person's console
# streams (deactivated, or signed out everywhere); `user_id` None: the whole tenant's, visitors' sockets included
# (suspended or deleted).
ACCESS_LOST = "access_lost"


def access_lost(user_id: uuid.UUID | str | None, reason: str) -> dict[str, Any]:
    return {"kind": ACCESS_LOST, "user_id": str(user_id) if user_id else None, "reason": reason}
