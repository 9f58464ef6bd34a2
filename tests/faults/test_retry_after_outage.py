"""A visitor whose older message is in the stream but not yet stored, and whose newer one NATS refused, gets
both stored, in send order, by following docs/protocol.md's retry rule: send only the oldest again until it is
acked, then the rest.

The edge refuses what comes after a message it could not publish (to keep seq order equal to send order), but
not the older message the stream holds already: refusing that one too would leave the client and the edge
each waiting for the other, the visitor's messages acked never (seen when a NATS cluster elected a new leader).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from desk import subjects
from tests.clients import Visitor
from tests.faults.stack import FaultStack

WORKERS = ("worker1", "worker2")


async def stream_holds(url: str, count: int, timeout: float = 10.0) -> None:
    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while (await nc.jetstream().stream_info(subjects.IN_STREAM)).state.messages < count:
            assert time.monotonic() < deadline, f"DESK_IN does not hold {count} message(s)"
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def retry_errors(visitor: Visitor, client_ids: set[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """The next error frame for each of `client_ids` (pings answered)."""
    errors: dict[str, dict[str, Any]] = {}
    while set(errors) != client_ids:
        frame = await visitor.recv(timeout)
        if frame["type"] == "ping":
            await visitor.send({"type": "pong"})
        elif frame["type"] == "error":
            assert frame["retry"], frame
            errors[frame["client_id"]] = frame
    return errors


async def send_until_acked(visitor: Visitor, client_id: str, body: str, timeout: float = 60.0) -> dict[str, Any]:
    """Send a message, and again after each retry error for it, until its ack comes."""
    deadline = time.monotonic() + timeout
    await visitor.send({"type": "message", "client_id": client_id, "body": body})
    while True:
        frame = await visitor.recv(max(0.1, deadline - time.monotonic()))
        if frame["type"] == "ping":
            await visitor.send({"type": "pong"})
        elif frame["type"] == "ack" and frame["client_id"] == client_id:
            return frame
        elif frame["type"] == "error" and frame.get("client_id") == client_id:
            assert frame["retry"], frame
            assert time.monotonic() < deadline, f"{client_id} not acked within {timeout} s: {frame}"
            await asyncio.sleep(0.5)
            await visitor.send({"type": "message", "client_id": client_id, "body": body})


@pytest.mark.timeout(180)
def test_the_oldest_message_sent_again_after_a_later_one_was_refused_is_stored_and_so_is_the_later_one(
    fault_stack: FaultStack,
) -> None:
    tenant = fault_stack.processes.bootstrap("ann", "bob")
    edge_nats = fault_stack.proxies["edge_nats"]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        for name in WORKERS:  # nothing is stored: the first message's ack cannot come in time
            await asyncio.to_thread(fault_stack.processes.stop, name)
        visitor = Visitor(fault_stack.base_url, tenant["site_key"])
        try:
            await visitor.connect()
            await visitor.send({"type": "message", "client_id": "first", "body": "first"})
            await stream_holds(fault_stack.nats.url, 1)
            edge_nats.set("reset")  # the edges lose NATS: the second message cannot be handed to the stream
            await visitor.send({"type": "message", "client_id": "second", "body": "second"})
            errors = await retry_errors(visitor, {"first", "second"})
            assert errors["second"]["code"] == "unavailable"
            assert errors["first"]["code"] == "not_stored_yet"
        finally:
            edge_nats.set("pass")
            for name in WORKERS:
                fault_stack.start(name)
        # The client's rule: the oldest again, alone, until acked; then the rest, in order.
        first = await send_until_acked(visitor, "first", "first")
        second = await send_until_acked(visitor, "second", "second")
        await visitor.close()
        reader = Visitor(fault_stack.base_url, tenant["site_key"], token=visitor.token)
        welcome = await reader.connect()
        thread = [await reader.expect("message") for _ in range(welcome["last_seq"])]
        await reader.close()
        return first, second, thread

    first, second, thread = asyncio.run(scenario())
    assert first["seq"] < second["seq"]
    assert [m["body"] for m in thread] == ["first", "second"]
