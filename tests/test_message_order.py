"""A thread shows its messages in the order they were accepted, whatever the number of store workers and
whichever of them takes a message (docs/architecture.md, "Order"). Two store workers run on the real stack;
agents' replies and the visitor's messages go out back to back, each accepted before the next is sent."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections.abc import Iterator

import pytest

from tests.clients import Agent, Visitor, logged_in_agent
from tests.conftest import Stack

REPLIES = 60
VISITOR_EVERY = 4  # the visitor writes after every 4th reply


@pytest.fixture
def second_store_worker(stack: Stack) -> Iterator[str]:
    """One more store worker beside the stack's: both pull from the same durable consumer."""
    name = "store-" + uuid.uuid4().hex[:6]
    stack.start(name, "python -m workers store")
    yield name
    stack.stop(name)


class Composer:
    """The console's composer posting replies as console.js does (htmx), one after the other: each POST
    returns once JetStream has accepted the reply."""

    def __init__(self, agent: Agent, conversation_id: str) -> None:
        self.agent, self.conversation_id = agent, conversation_id
        self.headers = {"HX-Request": "true", **agent.csrf_header(conversation_id)}

    def send(self, body: str) -> None:
        response = self.agent.client.post(
            f"/console/c/{self.conversation_id}/messages",
            data={"body": body, "client_id": uuid.uuid4().hex},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text


async def converse(stack: Stack, tenant: dict, paused: str | None = None) -> tuple[Visitor, Agent, str, list[str]]:
    """The visitor opens a conversation, then replies and visitor messages alternate as fast as they are
    accepted. With `paused`, that worker is stopped (SIGSTOP) during the replies and holds whatever JetStream
    handed it until the stream gives it to the other worker. Returns the bodies in the order they were sent."""
    visitor = Visitor(stack.base_url, tenant["site_key"])
    await visitor.connect()
    await visitor.send({"type": "message", "client_id": "v-0", "body": "visitor 0"})
    conversation_id = (await visitor.expect("ack"))["conversation_id"]
    agent = await asyncio.to_thread(logged_in_agent, stack.base_url, tenant)
    composer = await asyncio.to_thread(Composer, agent, conversation_id)
    sent = ["visitor 0"]
    if paused:
        stack.send_signal(paused, signal.SIGSTOP)
    try:
        for i in range(1, REPLIES + 1):
            await asyncio.to_thread(composer.send, f"reply {i}")
            sent.append(f"reply {i}")
            if i % VISITOR_EVERY == 0:
                await visitor.send({"type": "message", "client_id": f"v-{i}", "body": f"visitor {i}"})
                sent.append(f"visitor {i}")
                # the widget's next message waits for this ack too; a redelivery may take ack_wait (5 s)
                await visitor.expect("ack", timeout=60)
        # everything is stored once the visitor has seen the last reply
        while not any(f["type"] == "message" and f["body"] == sent[-1] for f in visitor.frames):
            await visitor.recv(timeout=60)
    finally:
        if paused:
            stack.send_signal(paused, signal.SIGCONT)
    return visitor, agent, conversation_id, sent


def timeline_bodies(agent: Agent, conversation_id: str) -> list[str]:
    """What an open pane appends when it catches up from the start (GET …/timeline?after_seq=0)."""
    response = agent.client.get(f"/console/c/{conversation_id}/timeline", params={"after_seq": 0})
    response.raise_for_status()
    return re.findall(r'<div class="body">(.*?)</div>', response.text, re.S)


async def assert_every_view_in_sent_order(
    stack: Stack, visitor: Visitor, agent: Agent, conversation_id: str, sent: list[str]
) -> None:
    live = [f["body"] for f in visitor.frames if f["type"] == "message"]
    assert live == sent, "the visitor's socket delivered them in the order they were sent"
    seqs = [f["seq"] for f in visitor.frames if f["type"] == "message"]
    assert seqs == list(range(1, len(sent) + 1)), "seqs follow the sent order, without gaps or repeats"

    again = Visitor(stack.base_url, visitor.site_key, token=visitor.token)
    await again.connect(last_seq=0)
    replayed = [(await again.expect("message"))["body"] for _ in sent]
    await again.close()
    assert replayed == sent, "a reloaded widget shows them in the sent order"

    assert await asyncio.to_thread(agent.thread, conversation_id) == sent, "the console's page (a reload)"
    assert await asyncio.to_thread(timeline_bodies, agent, conversation_id) == sent, "the console's live pane"


def test_replies_and_visitor_messages_keep_their_sent_order_with_two_store_workers(
    stack: Stack, second_store_worker: str
) -> None:
    tenant = stack.bootstrap("alice")

    async def scenario() -> None:
        visitor, agent, conversation_id, sent = await converse(stack, tenant)
        await assert_every_view_in_sent_order(stack, visitor, agent, conversation_id, sent)
        await visitor.close()

    asyncio.run(scenario())


def test_a_worker_that_stalls_holding_messages_does_not_let_later_ones_overtake_them(
    stack: Stack, second_store_worker: str
) -> None:
    tenant = stack.bootstrap("alice")

    async def scenario() -> None:
        visitor, agent, conversation_id, sent = await converse(stack, tenant, paused=second_store_worker)
        await assert_every_view_in_sent_order(stack, visitor, agent, conversation_id, sent)
        await visitor.close()

    asyncio.run(scenario())
