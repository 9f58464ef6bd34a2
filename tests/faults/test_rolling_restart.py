"""An upgrade's rolling restart under steady load loses and duplicates nothing (issue: operations).

50 visitors send 20 messages/s in all through the load balancer while every process (two edges, two
workers) is stopped with SIGTERM and started again, one after another, as a deployment does. The edges
drain: each socket's messages in flight are acked, then it is closed with 1012 and reconnects to the other
edge. The checker then compares every client's record with PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.faults.chaos import chat_through_faults, check
from tests.faults.stack import FaultStack

VISITORS = 50
INTERVAL = 2.5  # seconds between a visitor's messages: 20 messages/s in all
MIN_MESSAGES = 600  # half a minute of that load, the restart included


@pytest.mark.timeout(600)
def test_a_rolling_restart_under_load_loses_and_duplicates_nothing(fault_stack: FaultStack) -> None:
    tenant = fault_stack.processes.bootstrap("ann", "bob")
    steps = [("warm up", 10.0), ("rolling restart of every process", 10.0)]
    log: list[str] = []
    began = time.monotonic()  # chat_through_faults logs step times from (about) here
    views, agents = asyncio.run(chat_through_faults(fault_stack, tenant, VISITORS, INTERVAL, steps, MIN_MESSAGES, log))
    figures = check(fault_stack.database_url, views, agents)
    # Ack latency of the messages first sent while the processes were being restarted (from the log's times).
    restart = [line for line in log if "rolling restart" in line][0]
    start = float(restart.split(" s ")[0])
    length = float(restart.split(": ")[1].split(" s,")[0])
    during = sorted(
        v.acked_at[c] - v.first_sent_at[c]
        for v in views
        for c in v.acked_at
        if start <= v.first_sent_at[c] - began <= start + length
    )
    figures["restart_seconds"] = round(length, 1)
    figures["restart_acks"] = len(during)
    figures["restart_ack_p99_ms"] = round(1000 * during[int(len(during) * 0.99)]) if during else None
    print("\n".join(log))
    print(json.dumps(figures))
    assert figures["visitor_messages"] >= MIN_MESSAGES
    assert figures["reconnects"] > 0, "the edges' restarts should have moved visitors"
    assert during, "no message was sent during the restart"
