"""Storing messages (do_store_messages, the store worker's action) against the real PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from desk.actions.messages import Inbound, Stored, do_store_messages
from desk.db import tenant_session
from desk.models import Conversation
from desk.queries.conversations import thread_after
from tests.factories import new_agent, new_visitor


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
