"""The console over HTTP and the web process's own health: logins, CSRF, errors that say what is wrong."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from desk.embedded import free_port
from tests.clients import Agent, Visitor, start_conversation
from tests.conftest import Stack


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
