"""The chaos checker itself: it must fail when a promise is broken, or the chaos test proves nothing."""

from __future__ import annotations

import uuid

import pytest

from desk.actions.messages import Inbound, do_store_messages
from desk.db import tenant_session
from tests.factories import new_visitor
from tests.faults.chaos import AgentView, VisitorView, check


def _stored_view(tenant: uuid.UUID, n: int) -> VisitorView:
    """A visitor whose n messages were stored, acked and received exactly as they should be."""
    visitor = new_visitor(tenant)
    view = VisitorView("v", visitor_id=str(visitor))
    with tenant_session(tenant) as session:
        stored = do_store_messages(session, [Inbound(visitor, f"c{i}", f"m{i}") for i in range(n)])
        session.commit()
    for item in stored:
        assert item is not None
        view.sent.append(item.message.client_id)
        view.acks[item.message.client_id] = item.message.seq
        view.received.append(item.message.seq)
    return view


def test_a_faithful_record_passes(database_url: str, tenant: uuid.UUID) -> None:
    figures = check(database_url, [_stored_view(tenant, 3)], [])
    assert figures["visitor_messages"] == 3


@pytest.mark.parametrize(
    ("breach", "complaint"),
    [
        (lambda v: v.sent.append("never-stored"), "missing"),
        (lambda v: v.received.append(v.received[-1]), "not the thread"),
        (lambda v: v.received.pop(1), "not the thread"),
        (lambda v: v.acks.update({"c0": 2}), "acked c0 as seq 2"),
        (lambda v: v.sent.reverse(), "out of send order"),
    ],
    ids=["lost message", "duplicate delivery", "gap in delivery", "wrong ack", "reordered"],
)
def test_each_broken_promise_is_caught(database_url: str, tenant: uuid.UUID, breach, complaint: str) -> None:  # type: ignore[no-untyped-def]
    view = _stored_view(tenant, 3)
    breach(view)
    with pytest.raises(AssertionError, match=complaint):
        check(database_url, [view], [])


def test_an_agent_reply_that_was_never_stored_is_caught(database_url: str, tenant: uuid.UUID) -> None:
    with pytest.raises(AssertionError, match="stored 0 times"):
        check(database_url, [_stored_view(tenant, 1)], [AgentView("a@x.test", sent=["reply-that-vanished"])])
