"""Zero lost, zero duplicated, zero gaps while every part of the system fails in turn (issue: zero loss).

20 visitors and 2 agents chat through the proxies while, one after another, an edge, a worker, nats-server
and PostgreSQL are killed with SIGKILL and restarted, a worker is paused for longer than the ack wait, and each
hop is blackholed for 10 s. Then every client flushes its outbox and catches up, and the checker compares
each client's record with PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.faults.chaos import chat_through_faults, check, faults
from tests.faults.stack import FaultStack

VISITORS = 20
MIN_MESSAGES = 5000
INTERVAL = 0.33  # seconds between a visitor's messages: ~60 messages/s offered in all


@pytest.mark.timeout(900)
def test_no_message_is_lost_duplicated_or_out_of_order_while_every_part_fails(fault_stack: FaultStack) -> None:
    tenant = fault_stack.processes.bootstrap("ann", "bob")
    steps = [("warm up", 5.0)] + [(name, 5.0) for name in faults(fault_stack) if not name.startswith("rolling")]
    log: list[str] = []
    views, agents = asyncio.run(chat_through_faults(fault_stack, tenant, VISITORS, INTERVAL, steps, MIN_MESSAGES, log))
    figures = check(fault_stack.database_url, views, agents)
    print("\n".join(log))
    print(json.dumps(figures))
    assert figures["visitor_messages"] >= MIN_MESSAGES
    assert figures["agent_replies"] > 0
    assert figures["reconnects"] > 0, "the faults should have cut some visitors off"
