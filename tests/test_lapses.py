"""When time runs out on a conversation (desk/actions/lapses.py), swept as a worker's sweeper does: missed chats
are marked once, counted and announced; idle ones are resolved with a system message the visitor sees, and the
visitor's next message reopens them or starts anew, as the tenant says."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
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
from tests.test_routing_queue import set_routing
from workers import sweeper

Heard = list[tuple[str, dict[str, Any]]]


def sweep_until(nats_url: str, listen: list[str], done: Callable[[], bool], timeout: float = 30) -> Heard:
    """Routing sweeps with the installation's defaults, as a worker runs them, until `done()`; what the `listen`
    subjects heard meanwhile (our own published events come back to our subscriptions)."""

    async def run() -> Heard:
        heard: Heard = []
        nc = await nats.connect(nats_url)

        async def on(msg: Any) -> None:
            heard.append((msg.subject, json.loads(msg.data)))

        for subject in listen:
            await nc.subscribe(subject, cb=on)
        await nc.flush()
        deadline = time.monotonic() + timeout
        while True:
            await sweeper.sweep_routing(nc, Routing())
            await nc.flush()
            if await asyncio.to_thread(done):
                break
            assert time.monotonic() < deadline, "the sweeps never did it"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)
        await nc.close()
        return heard

    return asyncio.run(run())


def sweep_once(nats_url: str, listen: list[str]) -> Heard:
    return sweep_until(nats_url, listen, lambda: True)


def swept(
    tenant: uuid.UUID,
    nats_url: str,
    listen: Callable[[uuid.UUID], list[str]],
    done: Callable[[uuid.UUID], bool],
    ours: Callable[[uuid.UUID, Heard], bool],
) -> tuple[uuid.UUID, Heard]:
    """A new conversation (a visitor wrote, no one answered), swept until `done` for it; and what was heard.

    The suite's other test processes run workers whose sweepers share this database, and they may get to the
    conversation first: then its events went to their NATS and their hooks. When `ours` says so, it is tried
    again with a new conversation."""
    for _ in range(3):
        conversation = new_conversation(tenant)
        heard = sweep_until(nats_url, listen(conversation), lambda c=conversation: done(c))
        if ours(conversation, heard):
            return conversation, heard
    raise AssertionError("another process's sweeper got there first three times running")


def about(conversation: uuid.UUID, heard: Heard) -> list[dict[str, Any]]:
    """The events of `heard` about `conversation`."""
    return [
        e
        for _, e in heard
        if str(conversation) in (e.get("conversation_id"), (e.get("message") or {}).get("conversation_id"))
    ]


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
    notified: list[lapses.Missed] = []
    lapses.MISSED_HOOKS.append(notified.append)
    before = missed_count()
    try:
        conversation, heard = swept(
            tenant,
            nats_server.url,
            lambda _: [subjects.agent_events(tenant)],
            lambda c: missed_at(tenant, c) is not None,
            lambda c, _: c in [m.conversation_id for m in notified],
        )
        again = sweep_once(nats_server.url, [subjects.agent_events(tenant)])
    finally:
        lapses.MISSED_HOOKS.remove(notified.append)
    heard = [(s, e) for s, e in heard if e.get("change")]
    assert [(e["conversation_id"], e["change"]) for e in about(conversation, heard)] == [(str(conversation), "missed")]
    assert again == []  # once
    # Our sweeps mark every tenant's chats that are due (other tests' too): this tenant's, once each.
    assert [m.conversation_id for m in notified if m.tenant_id == tenant] == [conversation]
    assert missed_count() == before + len(notified)
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


def missed_at(tenant: uuid.UUID, conversation: uuid.UUID) -> datetime | None:
    with tenant_session(tenant) as session:
        return session.get(Conversation, conversation).missed_at


def visitor_of(tenant: uuid.UUID, conversation: uuid.UUID) -> uuid.UUID:
    with tenant_session(tenant) as session:
        return session.get(Conversation, conversation).visitor_id


def status_of(tenant: uuid.UUID, conversation: uuid.UUID) -> str:
    with tenant_session(tenant) as session:
        return session.get(Conversation, conversation).status


def idle_setup(tenant: uuid.UUID, nats_url: str) -> tuple[uuid.UUID, uuid.UUID, Heard]:
    """A conversation resolved as idle by our sweep (one second of silence), and what its visitor and the
    consoles heard."""
    set_routing(tenant, idle_resolve_seconds=1)
    conversation, heard = swept(
        tenant,
        nats_url,
        lambda c: [subjects.visitor_events(tenant, visitor_of(tenant, c)), subjects.agent_events(tenant)],
        lambda c: status_of(tenant, c) == "resolved",
        lambda c, heard: bool(about(c, heard)),
    )
    return conversation, visitor_of(tenant, conversation), [(s, e) for s, e in heard if about(conversation, [(s, e)])]


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
