"""Typing indicators both ways and read receipts, over the real stack's socket, long-polling and SSE stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.clients import Agent, Visitor
from tests.conftest import Stack


async def sse_events(agent: Agent) -> AsyncIterator[tuple[str, str]]:
    """The console's live stream, as (event, data) pairs."""
    async with (
        httpx.AsyncClient(base_url=agent.client.base_url, cookies=agent.client.cookies, timeout=30) as client,
        client.stream("GET", "/live/console") as response,
    ):
        assert response.status_code == 200
        event, data = "message", []
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and (data or event != "message"):
                yield event, "\n".join(data)
                event, data = "message", []


async def until(stream: AsyncIterator[tuple[str, str]], kind: str, seen: list[str]) -> str:
    """The next event of this kind's data; every event passed on the way is appended to `seen`."""
    async for event, data in stream:
        seen.append(event)
        if event == kind:
            return data
    raise AssertionError(f"the stream ended before a {kind} event")


async def visitor_with_a_conversation(stack: Stack, site_key: str) -> tuple[Visitor, str]:
    visitor = Visitor(stack.base_url, site_key)
    await visitor.connect()
    await visitor.send({"type": "message", "client_id": "c1", "body": "Hello?"})
    conversation_id = (await visitor.expect("ack"))["conversation_id"]
    if not visitor.received("message"):  # the ack and the message frame come in either order
        await visitor.expect("message")
    return visitor, conversation_id


def logged_in(stack: Stack, tenant: dict[str, Any]) -> Agent:
    login = tenant["agents"][0]
    agent = Agent(stack.base_url)
    agent.login(login["email"], login["password"])
    return agent


def test_a_visitor_typing_reaches_the_consoles_once_a_second_naming_visitor_and_conversation(stack: Stack) -> None:
    tenant = stack.bootstrap("dora")

    async def scenario() -> list[str]:
        visitor, conversation_id = await visitor_with_a_conversation(stack, tenant["site_key"])
        agent = logged_in(stack, tenant)
        stream = sse_events(agent)
        seen: list[str] = []
        await asyncio.wait_for(until(stream, "resync", seen), 10)  # subscribed
        for _ in range(3):  # three keystroke bursts within a second: the edge passes on one
            await visitor.send({"type": "typing"})
        typing = await asyncio.wait_for(until(stream, "typing", seen), 10)
        assert json.loads(typing) == {"visitor_id": visitor.visitor_id, "conversation_id": conversation_id}
        await visitor.send({"type": "message", "client_id": "c2", "body": "Are you there?"})
        assert await asyncio.wait_for(until(stream, "conversation", seen), 10) == conversation_id
        await stream.aclose()
        await visitor.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen.count("typing") == 1
    assert seen[:2] == ["resync", "typing"], "a visitor typing refreshes no inbox"


def test_typing_before_hello_is_ignored_and_typing_is_never_an_error(stack: Stack) -> None:
    tenant = stack.bootstrap()

    async def scenario() -> list[dict[str, Any]]:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        await visitor.send({"type": "typing"})  # no conversation yet: fine
        await visitor.send({"type": "ping"})
        await visitor.expect("pong")
        await visitor.close()
        return visitor.frames

    assert [f["type"] for f in asyncio.run(scenario())] == ["welcome", "pong"]


def test_an_agent_typing_and_reading_reach_the_visitors_socket_and_the_read_survives_a_reconnect(
    stack: Stack,
) -> None:
    tenant = stack.bootstrap("erin")

    async def scenario() -> None:
        visitor, conversation_id = await visitor_with_a_conversation(stack, tenant["site_key"])
        agent = logged_in(stack, tenant)
        assert (await asyncio.to_thread(agent.typing, conversation_id)).status_code == 204
        assert await visitor.expect("typing") == {"type": "typing", "author": "Erin"}

        # Asking for more than there is marks what there is.
        assert (await asyncio.to_thread(agent.mark_read, conversation_id, 99)).status_code == 204
        assert await visitor.expect("read") == {"type": "read", "seq": 1}
        # Nothing new read, nothing sent: the next frame the visitor gets is the pong.
        assert (await asyncio.to_thread(agent.mark_read, conversation_id, 1)).status_code == 204
        assert (await asyncio.to_thread(agent.mark_read, conversation_id, 0)).status_code == 204
        await visitor.send({"type": "ping"})
        assert (await visitor.expect("pong")) == {"type": "pong"}
        assert len(visitor.received("read")) == 1
        await visitor.close()

        again = Visitor(stack.base_url, tenant["site_key"], token=visitor.token)
        welcome = await again.connect(last_seq=1)
        assert welcome["read_seq"] == 1
        assert welcome["protocol"] == 1 and welcome["last_seq"] == 1
        await again.close()

    asyncio.run(scenario())


def test_a_new_visitor_is_welcomed_with_nothing_read(stack: Stack) -> None:
    tenant = stack.bootstrap()

    async def scenario() -> dict[str, Any]:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        welcome = await visitor.connect()
        await visitor.close()
        return welcome

    assert asyncio.run(scenario())["read_seq"] == 0


def test_read_and_typing_need_a_csrf_token_and_a_valid_seq(stack: Stack) -> None:
    tenant = stack.bootstrap("fay")

    async def scenario() -> str:
        visitor, conversation_id = await visitor_with_a_conversation(stack, tenant["site_key"])
        await visitor.close()
        return conversation_id

    conversation_id = asyncio.run(scenario())
    agent = logged_in(stack, tenant)
    assert agent.client.post(f"/console/c/{conversation_id}/read", data={"seq": "1"}).status_code == 400
    assert agent.client.post(f"/console/c/{conversation_id}/typing").status_code == 400
    headers = agent.csrf_header(conversation_id)
    bad = agent.client.post(f"/console/c/{conversation_id}/read", data={"seq": "-1"}, headers=headers)
    assert bad.status_code == 400
    missing = agent.client.post(
        "/console/c/00000000-0000-0000-0000-000000000000/read", data={"seq": "1"}, headers=headers
    )
    assert missing.status_code == 404


def test_a_long_poll_answers_with_an_agents_typing_and_its_welcome_carries_the_read_position(stack: Stack) -> None:
    tenant = stack.bootstrap("gus")

    async def scenario() -> None:
        agent = logged_in(stack, tenant)  # online: routing hands Gus the conversation
        visitor, conversation_id = await visitor_with_a_conversation(stack, tenant["site_key"])
        while not any(f["position"] == 0 for f in visitor.received("queue")):  # so no place in line comes later
            await visitor.expect("queue")
        await visitor.close()
        await asyncio.to_thread(agent.mark_read, conversation_id, 1)
        url = f"{stack.base_url}/lp/visitor"
        async with httpx.AsyncClient(timeout=30) as client:
            poll = asyncio.create_task(client.get(url, params={"token": visitor.token, "last_seq": 1}))
            await asyncio.sleep(0.5)  # the poll is waiting
            await asyncio.to_thread(agent.typing, conversation_id)
            frames = (await asyncio.wait_for(poll, 10)).json()["frames"]
            assert frames[0]["type"] == "welcome" and frames[0]["read_seq"] == 1
            assert frames[1:] == [{"type": "typing", "author": "Gus"}]

            sent = await client.post(
                url, params={"token": visitor.token}, content=json.dumps({"frames": [{"type": "typing"}]})
            )
            assert sent.json() == {"frames": []}

    asyncio.run(scenario())
