"""The console over HTTP and the web process's own health: logins, CSRF, errors that say what is wrong."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import websockets
from sqlalchemy import select

from desk import bus, subjects
from desk.actions.messages import as_event
from desk.db import tenant_session
from desk.embedded import free_port
from desk.models import Message
from tests.clients import Agent, Visitor, start_conversation
from tests.conftest import Stack
from tests.factories import tenant_id_of


def test_the_console_needs_a_login(stack: Stack) -> None:
    response = httpx.get(stack.base_url + "/console")
    assert response.status_code == 302
    assert "/login" in response.headers["location"]
    assert httpx.get(stack.base_url + "/live/console").status_code == 401


def test_a_wrong_password_is_refused_and_a_right_one_opens_the_inbox(stack: Stack) -> None:
    tenant = stack.bootstrap("dora")
    login = tenant["agents"][0]
    agent = Agent(stack.base_url)
    wrong = agent.login(login["email"], "not-the-password")
    assert wrong.status_code == 401
    assert "Wrong email or password." in wrong.text
    right = agent.login(login["email"], login["password"])
    assert right.status_code == 200
    assert "No conversations yet." in right.text


def test_forms_without_a_csrf_token_change_nothing(stack: Stack) -> None:
    tenant = stack.bootstrap("erin")
    login = tenant["agents"][0]

    conversation_id = start_conversation(stack.base_url, tenant["site_key"], "hi")
    agent = Agent(stack.base_url)
    agent.login(login["email"], login["password"])
    forged = agent.client.post(f"/console/c/{conversation_id}/messages", data={"body": "x", "client_id": "abc"})
    assert forged.status_code == 400
    assert "CSRF" in forged.text
    assert agent.thread(conversation_id) == ["hi"]
    login_without_token = httpx.post(stack.base_url + "/login", data={"email": login["email"], "password": "x"})
    assert login_without_token.status_code == 400


def test_a_retried_reply_post_is_stored_once(stack: Stack) -> None:
    tenant = stack.bootstrap("fay")
    login = tenant["agents"][0]

    async def scenario() -> None:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "c1", "body": "hello"})
        conversation_id = (await visitor.expect("ack"))["conversation_id"]
        agent = Agent(stack.base_url)
        agent.login(login["email"], login["password"])
        for _ in range(3):  # a double click and a browser retry, all with the form's client_id
            assert (await asyncio.to_thread(agent.reply, conversation_id, "only once", "form-1")).status_code == 200
        await visitor.send({"type": "message", "client_id": "c2", "body": "after"})
        assert (await visitor.expect("ack"))["seq"] == 3
        bodies = [f["body"] for f in visitor.received("message")]
        assert bodies == ["hello", "only once", "after"]
        await visitor.close()

    asyncio.run(scenario())


def test_an_empty_reply_is_refused_with_a_message_and_keeps_nothing(stack: Stack) -> None:
    tenant = stack.bootstrap("gus")
    login = tenant["agents"][0]

    conversation_id = start_conversation(stack.base_url, tenant["site_key"], "hi")
    agent = Agent(stack.base_url)
    agent.login(login["email"], login["password"])
    response = agent.reply(conversation_id, "   ")
    assert response.status_code == 400
    assert "body must be a non-empty string" in response.text


def test_a_client_that_pings_within_the_heartbeat_is_never_pinged_and_a_silent_one_is(stack: Stack) -> None:
    """One round trip per heartbeat, as widget.js makes it: the server answers the client's pings and sends none
    of its own while it hears from the client; once the client goes quiet, the server pings it."""
    tenant = stack.bootstrap()

    async def scenario(base_url: str) -> tuple[list[str], list[str]]:
        visitor = Visitor(base_url, tenant["site_key"])
        await visitor.connect()
        loop = asyncio.get_running_loop()
        talking: list[str] = []
        until = loop.time() + 7  # over two heartbeats, a ping every second
        while loop.time() < until:
            await visitor.send({"type": "ping"})
            with contextlib.suppress(TimeoutError):
                while True:
                    talking.append(json.loads(await asyncio.wait_for(visitor.ws.recv(), 1))["type"])
        quiet: list[str] = []
        with contextlib.suppress(TimeoutError):
            while "ping" not in quiet:
                quiet.append(json.loads(await asyncio.wait_for(visitor.ws.recv(), 6))["type"])
        await visitor.close()
        return talking, quiet

    with stack.another_web(DESKBELL_HEARTBEAT_SECONDS="3") as base_url:
        talking, quiet = asyncio.run(scenario(base_url))
    assert talking.count("pong") >= 5 and "ping" not in talking, talking
    assert quiet == ["ping"]


def test_a_silent_socket_is_closed_after_two_heartbeats(stack: Stack) -> None:
    tenant = stack.bootstrap()

    async def scenario(base_url: str) -> tuple[list[str], int]:
        visitor = Visitor(base_url, tenant["site_key"])
        await visitor.connect()
        seen = []
        try:
            while True:  # never answer: the server pings, then gives up on us
                seen.append(json.loads(await asyncio.wait_for(visitor.ws.recv(), 10))["type"])
        except websockets.ConnectionClosed as closed:
            return seen, closed.rcvd.code

    with stack.another_web(DESKBELL_HEARTBEAT_SECONDS="1") as base_url:
        seen, code = asyncio.run(scenario(base_url))
    assert "ping" in seen
    assert code == 4408


def test_a_reply_while_nats_is_down_says_so_and_keeps_the_draft(stack: Stack) -> None:
    tenant = stack.bootstrap("hal")
    login = tenant["agents"][0]

    conversation_id = start_conversation(stack.base_url, tenant["site_key"], "anyone?")
    with stack.another_web(NATS_URL=f"nats://127.0.0.1:{free_port()}") as base_url:
        agent = Agent(base_url)
        agent.login(login["email"], login["password"])
        response = agent.reply(conversation_id, "My careful answer", client_id="draft-1")
    assert response.status_code == 503
    assert "Not sent: the message service is unavailable." in response.text
    assert ">My careful answer</textarea>" in response.text
    assert 'name="client_id" value="draft-1"' in response.text, "the retry must reuse the same client_id"
    healthy = Agent(stack.base_url)
    healthy.login(login["email"], login["password"])
    assert healthy.thread(conversation_id) == ["anyone?"]


# -- the console's panes and live stream -------------------------------------------------------------------------


def test_a_pane_catches_up_from_its_cursors_and_its_parts_are_fragments(stack: Stack) -> None:
    tenant = stack.bootstrap("ida")

    async def scenario() -> str:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        conversation = ""
        for n, body in enumerate(("one", "two", "three")):
            await visitor.send({"type": "message", "client_id": f"c{n}", "body": body})
            conversation = (await visitor.expect("ack"))["conversation_id"]
        await visitor.close()
        return conversation

    conversation_id = asyncio.run(scenario())
    agent = Agent(stack.base_url)
    agent.login(tenant["agents"][0]["email"], tenant["agents"][0]["password"])

    # Logging in put the agent online, and routing gives them the chat: wait for that event to be in the pane.
    for _ in range(100):
        pane = agent.client.get(f"/console/c/{conversation_id}/pane").text
        if "event-assigned" in pane:
            break
        time.sleep(0.1)
    assert "event-assigned" in pane
    assert pane.lstrip().startswith('<section class="pane"') and "<html" not in pane
    assert re.findall(r'data-seq="(\d+)"', pane) == ["1", "2", "3"]
    assert 'class="composer' in pane
    after = agent.client.get(f"/console/c/{conversation_id}/timeline", params={"after_seq": 1, "after_event": 0})
    assert re.findall(r'<div class="body">(.*?)</div>', after.text) == ["two", "three"]
    last_event = max([0, *map(int, re.findall(r'data-event="(\d+)"', pane))])
    caught_up = {"after_seq": 3, "after_event": last_event}
    assert agent.client.get(f"/console/c/{conversation_id}/timeline", params=caught_up).text.strip() == ""
    bad = agent.client.get(f"/console/c/{conversation_id}/timeline", params={"after_seq": -1})
    assert bad.status_code == 400
    assert agent.client.get("/console/c/00000000-0000-0000-0000-000000000000/pane").status_code == 404
    header = agent.client.get(f"/console/c/{conversation_id}/header").text
    assert "<h2>" in header and "waiting" in header and "<html" not in header

    page = agent.conversation_page(conversation_id)
    assert f'id="pane-{conversation_id}"' in page and 'id="conversation-list"' in page, "a deep link: list and pane"


async def console_events(agent: Agent) -> AsyncIterator[tuple[str, str]]:
    """The console's live stream as (event, data) pairs."""
    async with (
        httpx.AsyncClient(base_url=agent.client.base_url, cookies=agent.client.cookies, timeout=30) as client,
        client.stream("GET", "/live/console") as response,
    ):
        assert response.status_code == 200
        event, data = "", []
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and event:
                yield event, "\n".join(data)
                event, data = "", []


async def next_event(stream: AsyncIterator[tuple[str, str]], name: str, seen: list[tuple[str, str]]) -> str:
    async for event, data in stream:
        seen.append((event, data))
        if event == name:
            return data
    raise AssertionError(f"the stream ended before a {name} event")


def test_the_stream_signals_list_and_conversation_changes_and_calls_for_attention(stack: Stack) -> None:
    tenant = stack.bootstrap("jo")
    login = tenant["agents"][0]

    async def scenario() -> None:
        agent = Agent(stack.base_url)
        await asyncio.to_thread(agent.login, login["email"], login["password"])  # online: new chats are hers
        stream = console_events(agent)
        seen: list[tuple[str, str]] = []
        await asyncio.wait_for(next_event(stream, "resync", seen), 10)

        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "c1", "body": "A new chat"})
        conversation_id = (await visitor.expect("ack"))["conversation_id"]
        alert = json.loads(await asyncio.wait_for(next_event(stream, "attention", seen), 10))
        assert (alert["conversation_id"], alert["new"]) == (conversation_id, True)
        assert (alert["name"], alert["preview"]) == ("A visitor", "A new chat")
        assert ("inbox", "") in seen and ("conversation", conversation_id) in seen

        # The router gives it to her (the only agent online): now it is hers.
        mine = "/console/conversations?view=mine"
        while conversation_id not in (await asyncio.to_thread(agent.client.get, mine)).text:
            await asyncio.sleep(0.1)
        await visitor.send({"type": "message", "client_id": "c2", "body": "Still there?"})
        alert = json.loads(await asyncio.wait_for(next_event(stream, "attention", seen), 10))
        assert (alert["new"], alert["mine"], alert["preview"]) == (False, True, "Still there?")

        # Reading changes the unread count everyone's list shows.
        seen.clear()
        assert (await asyncio.to_thread(agent.mark_read, conversation_id, 2)).status_code == 204
        assert await asyncio.wait_for(next_event(stream, "conversation", seen), 10) == conversation_id
        assert ("inbox", "") in seen
        await stream.aclose()
        await visitor.close()

    asyncio.run(scenario())


def test_a_message_event_from_an_older_worker_without_the_alert_facts_still_calls_for_attention(
    stack: Stack,
) -> None:
    """During a rolling upgrade, a worker of the previous release publishes message events without the alert
    facts; the console then looks them up."""
    tenant = stack.bootstrap("ole")
    login = tenant["agents"][0]

    async def scenario() -> None:
        agent = Agent(stack.base_url)
        await asyncio.to_thread(agent.login, login["email"], login["password"])
        await asyncio.to_thread(agent.set_presence, "away")  # routing leaves the chat unassigned
        stream = console_events(agent)
        seen: list[tuple[str, str]] = []
        await asyncio.wait_for(next_event(stream, "resync", seen), 10)
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "c1", "body": "Hello from before the upgrade"})
        conversation_id = (await visitor.expect("ack"))["conversation_id"]
        await asyncio.wait_for(next_event(stream, "attention", seen), 10)  # the new worker's event

        tenant_id = tenant_id_of(tenant)
        with tenant_session(tenant_id) as session:
            first = session.scalars(select(Message).where(Message.conversation_id == uuid.UUID(conversation_id)))
            event = as_event(first.one())
        nc = await nats.connect(stack.env["NATS_URL"])
        await nc.publish(subjects.agent_events(tenant_id), bus.encode({"kind": "message", "message": event}))
        await nc.close()
        alert = json.loads(await asyncio.wait_for(next_event(stream, "attention", seen), 10))
        assert (alert["conversation_id"], alert["new"], alert["mine"]) == (conversation_id, True, False)
        assert alert["preview"] == "Hello from before the upgrade"
        await stream.aclose()
        await visitor.close()

    asyncio.run(scenario())


def test_admins_and_owners_find_the_admin_panel_from_the_console_and_agents_do_not(stack: Stack) -> None:
    tenant = stack.bootstrap("vic")
    agent = Agent(stack.base_url)
    login = tenant["agents"][0]
    assert agent.login(login["email"], login["password"]).status_code == 200
    assert 'href="/admin"' not in agent.client.get("/console").text
    owner = Agent(stack.base_url)
    assert owner.login(tenant["owner_email"], tenant["owner_password"]).status_code == 200
    assert 'href="/admin">Admin</a>' in owner.client.get("/console").text
