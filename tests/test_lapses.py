"""When time runs out on a conversation (desk/actions/lapses.py), swept as a worker's sweeper does: missed chats
are marked once, counted and announced; idle ones are resolved with a system message the visitor sees, and the
visitor's next message reopens them or starts anew, as the tenant says."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import nats
from prometheus_client import REGISTRY
from sqlalchemy import select

from desk import subjects
from desk.actions import lapses
from desk.actions.messages import Inbound, do_store_messages
from desk.db import tenant_session
from desk.embedded import NatsServer
from desk.models import Conversation, ConversationEvent, Message
from desk.settings import Routing
from tests.factories import new_conversation
from tests.test_routing_queue import eventually, set_routing
from workers import sweeper


def sweep_once(nats_url: str, listen: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """One routing sweep with the installation's defaults, as a worker runs it; what `listen` subjects heard."""

    async def run() -> list[tuple[str, dict[str, Any]]]:
        heard: list[tuple[str, dict[str, Any]]] = []
        nc = await nats.connect(nats_url)

        async def on(msg: Any) -> None:
            heard.append((msg.subject, json.loads(msg.data)))

        for subject in listen:
            await nc.subscribe(subject, cb=on)
        await nc.flush()
        await sweeper.sweep_routing(nc, Routing())
        await nc.flush()
        await asyncio.sleep(0.2)  # our own published events come back to our subscriptions
        await nc.close()
        return heard

    return asyncio.run(run())


def events_of(tenant: uuid.UUID, conversation: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    with tenant_session(tenant) as session:
        return [
            (e.kind, e.detail)
            for e in session.scalars(
                select(ConversationEvent)
                .where(ConversationEvent.conversation_id == conversation)
                .order_by(ConversationEvent.id)
            )
        ]


def missed_count() -> float:
    return REGISTRY.get_sample_value("deskbell_missed_chats_total") or 0.0


def test_a_chat_waiting_past_the_threshold_is_marked_missed_once_counted_and_announced(
    tenant: uuid.UUID, nats_server: NatsServer
) -> None:
    set_routing(tenant, missed_after_seconds=1)
    conversation = new_conversation(tenant)  # a visitor wrote; no agent replies
    notified: list[lapses.Missed] = []
    lapses.MISSED_HOOKS.append(notified.append)
    before = missed_count()
    try:
        heard = eventually(
            lambda: [e for _, e in sweep_once(nats_server.url, [subjects.agent_events(tenant)]) if e.get("change")],
            "the missed mark",
        )
        again = sweep_once(nats_server.url, [subjects.agent_events(tenant)])
    finally:
        lapses.MISSED_HOOKS.remove(notified.append)
    assert [(e["conversation_id"], e["change"]) for e in heard] == [(str(conversation), "missed")]
    assert again == []  # once
    assert [m.conversation_id for m in notified] == [conversation]
    assert missed_count() == before + 1
    assert [kind for kind, _ in events_of(tenant, conversation)] == ["missed"]
    with tenant_session(tenant) as session:
        assert session.get(Conversation, conversation).missed_at is not None


def test_a_chat_answered_in_time_is_never_missed(tenant: uuid.UUID, nats_server: NatsServer) -> None:
    set_routing(tenant, missed_after_seconds=1)
    conversation = new_conversation(tenant)
    with tenant_session(tenant) as session:
        visitor = session.get(Conversation, conversation).visitor_id
        do_store_messages(session, [Inbound(visitor, "agent:r1", "Hello!", sender="agent", author_name="Ann")])
        session.commit()
    with tenant_session(tenant) as session:
        assert lapses.do_mark_missed(session, Routing(missed_after_seconds=1)) == []


def idle_setup(tenant: uuid.UUID, nats_url: str) -> tuple[uuid.UUID, uuid.UUID, list[tuple[str, dict[str, Any]]]]:
    set_routing(tenant, idle_resolve_seconds=1)
    conversation = new_conversation(tenant)
    with tenant_session(tenant) as session:
        visitor = session.get(Conversation, conversation).visitor_id
    heard = eventually(
        lambda: sweep_once(nats_url, [subjects.visitor_events(tenant, visitor), subjects.agent_events(tenant)]),
        "the idle conversation resolved",
    )
    return conversation, visitor, heard


def test_an_idle_conversation_is_resolved_with_a_system_message_the_visitor_sees(
    tenant: uuid.UUID, nats_server: NatsServer
) -> None:
    conversation, visitor, heard = idle_setup(tenant, nats_server.url)
    text = lapses.idle_text(1)
    to_visitor = [e for s, e in heard if s == subjects.visitor_events(tenant, visitor)]
    assert [(e["kind"], e["message"]["sender"], e["message"]["body"]) for e in to_visitor] == [
        ("message", "system", text)
    ]
    to_consoles = [e.get("change") or e["kind"] for s, e in heard if s == subjects.agent_events(tenant)]
    assert to_consoles == ["message", "resolved"]
    with tenant_session(tenant) as session:
        resolved = session.get(Conversation, conversation)
        assert (resolved.status, resolved.auto_resolved_at is not None) == ("resolved", True)
        thread = select(Message.body).where(Message.conversation_id == conversation).order_by(Message.seq)
        assert list(session.scalars(thread)) == ["Hello?", text]
    assert events_of(tenant, conversation) == [("resolved", {"previous": "open", "reason": "idle"})]


def write_again(tenant: uuid.UUID, visitor: uuid.UUID) -> uuid.UUID:
    """The visitor writes again, through the store action."""
    with tenant_session(tenant) as session:
        [stored] = do_store_messages(session, [Inbound(visitor, "again", "Me again")])
        session.commit()
        return stored.message.conversation_id


def test_after_an_idle_close_the_visitors_next_message_reopens_the_conversation(
    tenant: uuid.UUID, nats_server: NatsServer
) -> None:
    conversation, visitor, _ = idle_setup(tenant, nats_server.url)
    assert write_again(tenant, visitor) == conversation
    with tenant_session(tenant) as session:
        assert session.get(Conversation, conversation).status == "open"
    assert [kind for kind, _ in events_of(tenant, conversation)] == ["resolved", "reopened"]


def test_a_tenant_that_wants_a_new_conversation_after_an_idle_close_gets_one(
    tenant: uuid.UUID, nats_server: NatsServer
) -> None:
    conversation, visitor, _ = idle_setup(tenant, nats_server.url)
    set_routing(tenant, reopen_after_idle=False)
    fresh = write_again(tenant, visitor)
    assert fresh != conversation
    with tenant_session(tenant) as session:
        assert session.get(Conversation, conversation).status == "resolved"
