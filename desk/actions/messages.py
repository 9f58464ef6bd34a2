"""Storing messages: idempotent by (visitor, client_id), seq assigned under the visitor row's lock.

docs/architecture.md, step 4. The worker calls do_store_messages() for a batch and publishes what it returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.actions.routing import do_reopen_idle
from desk.models import Conversation, Message, Visitor

PREVIEW_CHARS = 140


@dataclass(frozen=True)
class Inbound:
    """A message waiting to be stored, as the edge or Flask published it."""

    visitor_id: uuid.UUID
    client_id: str
    body: str
    sender: str = "visitor"
    author_id: uuid.UUID | None = None
    author_name: str | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Inbound:
        author = data.get("author_id")
        return cls(
            visitor_id=uuid.UUID(data["visitor_id"]),
            client_id=data["client_id"],
            body=data["body"],
            sender=data.get("sender", "visitor"),
            author_id=uuid.UUID(author) if author else None,
            author_name=data.get("author_name"),
        )

    def payload(self) -> dict[str, Any]:
        return {
            "visitor_id": str(self.visitor_id),
            "client_id": self.client_id,
            "body": self.body,
            "sender": self.sender,
            "author_id": str(self.author_id) if self.author_id else None,
            "author_name": self.author_name,
        }


@dataclass(frozen=True)
class Stored:
    message: Message
    created: bool
    new_conversation: bool
    # What a console needs to decide whether the message is worth a sound (web/edge/console.py), known here at
    # no cost: the conversation's assignee and the visitor's name when it was stored.
    assignee_id: uuid.UUID | None = None
    visitor_name: str | None = None

    def alert(self) -> dict[str, Any]:
        """The alert facts the agents' copy of the event carries."""
        return {
            "new": self.new_conversation,
            "assignee_id": str(self.assignee_id) if self.assignee_id else None,
            "name": self.visitor_name,
        }


def as_event(message: Message) -> dict[str, Any]:
    """The one shape of a stored message on the event bus (visitor frames and console fragments derive from it)."""
    return {
        "id": message.id,
        "tenant_id": str(message.tenant_id),
        "visitor_id": str(message.visitor_id),
        "conversation_id": str(message.conversation_id),
        "seq": message.seq,
        "client_id": message.client_id,
        "sender": message.sender,
        "author": message.author_name,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
    }


def do_store_messages(session: Session, batch: list[Inbound]) -> list[Stored | None]:
    """Store a batch in one transaction; a message already stored is returned again, not stored twice.

    Returns one entry per input, None for a message whose visitor does not exist in this tenant (the caller
    drops it). A message joins the visitor's conversation that is not resolved (a pending or snoozed one is
    opened again by a visitor message), else starts a new one. Locks every visitor row of the batch in id
    order first, so concurrent workers never deadlock and a visitor's seqs are assigned one at a time.
    """
    visitor_ids = sorted({item.visitor_id for item in batch})
    visitors = {
        v.id: v
        for v in session.scalars(
            select(Visitor)
            .where(Visitor.id.in_(visitor_ids))
            .order_by(Visitor.id)
            .with_for_update()
            # the locked row's last_seq, not one this session may have loaded before
            .execution_options(populate_existing=True)
        )
    }
    existing = {
        (m.visitor_id, m.client_id): m
        for m in session.scalars(
            select(Message).where(
                Message.visitor_id.in_(visitor_ids), Message.client_id.in_({i.client_id for i in batch})
            )
        )
    }
    # A conversation the sweeper closed for being idle comes back with the visitor's next message (issue 8).
    do_reopen_idle(
        session, {i.visitor_id for i in batch if i.sender == "visitor" and (i.visitor_id, i.client_id) not in existing}
    )
    open_conversations = {
        c.visitor_id: c
        for c in session.scalars(
            select(Conversation)
            .where(Conversation.visitor_id.in_(visitor_ids), Conversation.status != "resolved")
            .order_by(Conversation.created_at)
        )
    }
    now = datetime.now(UTC)
    results: list[Stored | None] = []
    for item in batch:
        visitor = visitors.get(item.visitor_id)
        if visitor is None:
            results.append(None)
            continue
        key = (item.visitor_id, item.client_id)
        if key in existing:
            known = open_conversations.get(item.visitor_id)
            assignee = known.assignee_id if known is not None and known.id == existing[key].conversation_id else None
            results.append(Stored(existing[key], False, False, assignee, visitor.name))
            continue
        conversation = open_conversations.get(item.visitor_id)
        new_conversation = conversation is None
        if conversation is None:
            conversation = Conversation(id=uuid.uuid4(), visitor_id=visitor.id, status="open", unread_count=0)
            session.add(conversation)
            open_conversations[visitor.id] = conversation
        visitor.last_seq += 1
        message = Message(
            visitor_id=visitor.id,
            conversation_id=conversation.id,
            seq=visitor.last_seq,
            client_id=item.client_id,
            sender=item.sender,
            author_id=item.author_id,
            author_name=item.author_name,
            body=item.body,
            created_at=now,
        )
        session.add(message)
        conversation.last_activity_at = now
        conversation.last_message_preview = item.body[:PREVIEW_CHARS]
        if item.sender == "visitor":
            visitor.last_seen_at = now
            conversation.unread_count += 1
            conversation.waiting_since = conversation.waiting_since or now
            if conversation.status in ("pending", "snoozed"):  # the visitor wrote back: it needs the team again
                conversation.status = "open"
                conversation.snoozed_until = None
        elif item.sender == "agent":
            conversation.waiting_since = None
        existing[key] = message
        results.append(Stored(message, True, new_conversation, conversation.assignee_id, visitor.name))
    session.flush()
    return results
