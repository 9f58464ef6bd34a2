"""An agent marking a conversation read never waits for the visitor's row, which the store worker locks before it
updates the conversation (workers/store.py): waiting for it there was a deadlock (desk/actions/receipts.py)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from desk.actions.receipts import do_mark_read
from desk.db import system_session, tenant_session
from desk.models import Conversation, Visitor
from tests.clients import start_conversation
from tests.conftest import Stack


def test_marking_read_goes_through_while_the_store_worker_holds_the_visitors_row(stack: Stack) -> None:
    made = stack.bootstrap("reader")
    conversation_id = uuid.UUID(start_conversation(stack.base_url, str(made["site_key"]), "Hello, anyone?"))
    with system_session() as session:
        tenant_id, visitor_id = session.execute(
            select(Conversation.tenant_id, Conversation.visitor_id).where(Conversation.id == conversation_id)
        ).one()

    def mark() -> int | None:
        with tenant_session(tenant_id) as session:
            return do_mark_read(session, conversation_id, 1)

    # The worker's session ends (and its lock with it) before the pool waits for `mark`, whatever happens.
    with ThreadPoolExecutor(1) as pool, tenant_session(tenant_id) as worker:
        # As the store worker's batch begins: the visitor's row locked until its transaction ends.
        assert worker.scalar(select(Visitor.id).where(Visitor.id == visitor_id).with_for_update()) == visitor_id
        moved = pool.submit(mark).result(timeout=20)  # it waited for that lock before, and so the worker for it
        worker.rollback()
    assert moved == 1
    with tenant_session(tenant_id) as session:
        read = session.get(Conversation, conversation_id)
        assert read is not None and (read.agent_read_seq, read.unread_count) == (1, 0)
