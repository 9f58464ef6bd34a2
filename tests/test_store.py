"""Storing messages (do_store_messages, the store worker's action) against the real PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from desk.actions.messages import Inbound, Stored, do_store_messages
from desk.db import tenant_session
from desk.models import Conversation, Visitor
from desk.queries.conversations import thread_after
from tests.factories import new_agent, new_tenant, new_visitor


def store(tenant: uuid.UUID, *batch: Inbound) -> list[Stored]:
    """One batch in its own session and transaction, as the store worker does it."""
    with tenant_session(tenant) as session:
        results = do_store_messages(session, list(batch))
        session.commit()
    stored = [r for r in results if r is not None]
    assert len(stored) == len(batch), "every visitor of the batch exists"
    return stored


def thread(tenant: uuid.UUID, visitor: uuid.UUID) -> list[tuple[int, str]]:
    with tenant_session(tenant) as session:
        return [(m.seq, m.body) for m in session.scalars(thread_after(visitor, 0))]


def test_a_visitors_messages_get_seqs_one_to_n_without_gaps(tenant: uuid.UUID) -> None:
    visitor = new_visitor(tenant)
    store(tenant, *(Inbound(visitor, f"m-{i}", f"message {i}") for i in range(1, 11)))
    store(tenant, Inbound(visitor, "m-11", "message 11"))
    assert thread(tenant, visitor) == [(i, f"message {i}") for i in range(1, 12)]


def test_the_same_client_id_twice_is_stored_once_with_the_same_seq(tenant: uuid.UUID) -> None:
    visitor = new_visitor(tenant)
    [first] = store(tenant, Inbound(visitor, "once", "Hello"))
    [again] = store(tenant, Inbound(visitor, "once", "Hello, sent again"))
    assert (first.created, again.created) == (True, False)
    assert again.message.seq == first.message.seq == 1
    assert thread(tenant, visitor) == [(1, "Hello")]


def test_the_same_client_id_twice_in_one_batch_is_stored_once(tenant: uuid.UUID) -> None:
    visitor = new_visitor(tenant)
    first, again = store(tenant, Inbound(visitor, "once", "Hello"), Inbound(visitor, "once", "Hello"))
    assert (first.created, again.created, again.message.seq) == (True, False, 1)
    assert thread(tenant, visitor) == [(1, "Hello")]


def test_a_batch_of_two_visitors_keeps_each_visitors_order(tenant: uuid.UUID) -> None:
    ann, bob = new_visitor(tenant), new_visitor(tenant)
    store(
        tenant,
        Inbound(ann, "a1", "ann 1"),
        Inbound(bob, "b1", "bob 1"),
        Inbound(bob, "b2", "bob 2"),
        Inbound(ann, "a2", "ann 2"),
        Inbound(bob, "b3", "bob 3"),
    )
    assert thread(tenant, ann) == [(1, "ann 1"), (2, "ann 2")]
    assert thread(tenant, bob) == [(1, "bob 1"), (2, "bob 2"), (3, "bob 3")]


def test_the_first_message_opens_a_conversation_and_later_ones_join_it(tenant: uuid.UUID) -> None:
    visitor = new_visitor(tenant)
    [first] = store(tenant, Inbound(visitor, "m-1", "Hi"))
    second, third = store(tenant, Inbound(visitor, "m-2", "Anyone?"), Inbound(visitor, "m-3", "Hello?"))
    assert [first.new_conversation, second.new_conversation, third.new_conversation] == [True, False, False]
    assert first.message.conversation_id == second.message.conversation_id == third.message.conversation_id
    with tenant_session(tenant) as session:
        [conversation] = session.scalars(select(Conversation).where(Conversation.visitor_id == visitor)).all()
    assert (conversation.status, conversation.last_message_preview) == ("open", "Hello?")


def test_concurrent_stores_for_one_visitor_assign_each_seq_exactly_once(tenant: uuid.UUID) -> None:
    visitor = new_visitor(tenant)

    def sender(thread_no: int) -> list[int]:
        return [store(tenant, Inbound(visitor, f"t{thread_no}-{i}", "hi"))[0].message.seq for i in range(50)]

    with ThreadPoolExecutor(4) as pool:
        per_thread = list(pool.map(sender, range(4)))

    assert all(seqs == sorted(seqs) for seqs in per_thread), "each sender sees its own messages in order"
    assert sorted(seq for seqs in per_thread for seq in seqs) == list(range(1, 201))
    assert [seq for seq, _ in thread(tenant, visitor)] == list(range(1, 201))
    with tenant_session(tenant) as session:
        conversations = session.scalars(select(Conversation).where(Conversation.visitor_id == visitor)).all()
    assert len(conversations) == 1


def test_an_agent_reply_takes_the_next_seq_of_the_visitors_thread(tenant: uuid.UUID) -> None:
    visitor, agent = new_visitor(tenant), new_agent(tenant)
    store(tenant, Inbound(visitor, "m-1", "Hi"), Inbound(visitor, "m-2", "Anyone?"))
    [reply] = store(tenant, Inbound(visitor, "r-1", "Yes, hello!", sender="agent", author_id=agent, author_name="Al"))
    [after] = store(tenant, Inbound(visitor, "m-3", "Great"))
    assert (reply.message.seq, reply.message.sender, reply.message.author_name) == (3, "agent", "Al")
    assert thread(tenant, visitor) == [(1, "Hi"), (2, "Anyone?"), (3, "Yes, hello!"), (4, "Great")]
    assert after.message.conversation_id == reply.message.conversation_id


def test_one_batch_keeps_each_conversations_counts_waiting_time_and_status(tenant: uuid.UUID) -> None:
    """What the inbox shows after a mixed batch: unread visitor messages, since when the visitor waits (kept while
    waiting, cleared by an answer, started again by the next question), and a snoozed chat woken by its visitor."""
    ann, bob = new_visitor(tenant), new_visitor(tenant)
    agent = new_agent(tenant)
    [first] = store(tenant, Inbound(bob, "b0", "Earlier question"))
    waited_since = datetime(2026, 1, 1, tzinfo=UTC)
    with tenant_session(tenant) as session:
        snoozed = session.get(Conversation, first.message.conversation_id)
        assert snoozed is not None
        snoozed.status, snoozed.snoozed_until, snoozed.waiting_since = "snoozed", waited_since, waited_since
        session.commit()

    stored = store(
        tenant,
        Inbound(bob, "b1", "Still there?"),
        Inbound(bob, "b2", "Yes, here.", sender="agent", author_id=agent, author_name="Al"),
        Inbound(bob, "b3", "Thanks, one more thing"),
        Inbound(ann, "a1", "Welcome!", sender="agent", author_id=agent, author_name="Al"),
        Inbound(ann, "a2", "Hi, I have a question"),
    )

    assert [s.new_conversation for s in stored] == [False, False, False, True, False]
    with tenant_session(tenant) as session:
        bobs = session.get(Conversation, first.message.conversation_id)
        anns = session.get(Conversation, stored[3].message.conversation_id)
        seen = dict(session.execute(select(Visitor.id, Visitor.last_seen_at).where(Visitor.id.in_([ann, bob]))).all())
    assert bobs is not None and anns is not None
    # Bob: 1 unread before, 2 more; the answer cleared his wait and his next question started it again.
    assert (bobs.status, bobs.snoozed_until, bobs.unread_count) == ("open", None, 3)
    assert bobs.waiting_since == bobs.last_activity_at == stored[2].message.created_at
    assert bobs.last_message_preview == "Thanks, one more thing"
    # Ann: a new conversation, started by the agent; she waits from her own message on.
    assert (anns.status, anns.unread_count, anns.last_message_preview) == ("open", 1, "Hi, I have a question")
    assert anns.waiting_since == stored[4].message.created_at
    assert seen[ann] == seen[bob] == stored[4].message.created_at


def test_an_unknown_or_another_tenants_visitor_is_dropped_and_the_rest_of_the_batch_is_stored(
    tenant: uuid.UUID,
) -> None:
    ann, stranger = new_visitor(tenant), new_visitor(new_tenant())
    batch = [
        Inbound(ann, "a1", "one"),
        Inbound(uuid.uuid4(), "x1", "nobody"),
        Inbound(stranger, "s1", "another tenant's"),
        Inbound(ann, "a2", "two"),
    ]
    with tenant_session(tenant) as session:
        results = do_store_messages(session, batch)
        session.commit()
    assert [r.message.seq if r else None for r in results] == [1, None, None, 2]
    assert thread(tenant, ann) == [(1, "one"), (2, "two")]


def test_a_message_stored_again_is_returned_as_it_was_stored(tenant: uuid.UUID) -> None:
    visitor, agent = new_visitor(tenant), new_agent(tenant)
    [first] = store(tenant, Inbound(visitor, "m-1", "Hi"))
    with tenant_session(tenant) as session:
        conversation = session.get(Conversation, first.message.conversation_id)
        assert conversation is not None
        conversation.assignee_id = agent
        session.commit()
    again, twice = store(tenant, Inbound(visitor, "m-1", "Hi"), Inbound(visitor, "m-1", "Hi"))
    for copy in (again, twice):
        assert (copy.created, copy.new_conversation, copy.assignee_id) == (False, False, agent)
        assert (copy.message.id, copy.message.seq, copy.message.created_at) == (
            first.message.id,
            1,
            first.message.created_at,
        )


def test_a_client_id_longer_than_its_column_is_refused_not_cut(tenant: uuid.UUID) -> None:
    visitor = new_visitor(tenant)
    with tenant_session(tenant) as session, pytest.raises(DataError):
        do_store_messages(session, [Inbound(visitor, "x" * 81, "Hi")])
    assert thread(tenant, visitor) == []
