"""Agents attach files (docs/widget.md, "Attachments"): the console uploads a file to a conversation and puts its
URL in the reply. Same size limit and type allow-list as visitors', the type found from the content; the file is
the conversation's visitor's to open (by their token), and the tenant's agents', and no one else's."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from desk.db import system_session
from desk.models import Attachment
from tests.clients import Agent, Visitor, logged_in_agent
from tests.conftest import Stack
from tests.test_attachments import HTML, PDF, tiny_png


def visitor_in_conversation(base_url: str, site_key: str) -> tuple[Visitor, str]:
    """A visitor who said hello over a real socket (closed again), and their conversation."""

    async def scenario() -> tuple[Visitor, str]:
        visitor = Visitor(base_url, site_key)
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": uuid.uuid4().hex, "body": "Can you send the invoice?"})
        ack = await visitor.expect("ack")
        await visitor.close()
        return visitor, ack["conversation_id"]

    return asyncio.run(scenario())


def attach(
    agent: Agent, conversation_id: str, name: str, data: bytes, content_type: str = "image/png", csrf: bool = True
) -> httpx.Response:
    """What agent_attach.js posts: the file, with the page's CSRF header."""
    headers = agent.csrf_header() if csrf else {}
    return agent.client.post(
        f"/console/c/{conversation_id}/attachments", files={"file": (name, data, content_type)}, headers=headers
    )


def count_for(visitor_id: str) -> int:
    with system_session() as session:
        return session.scalar(select(func.count()).where(Attachment.visitor_id == uuid.UUID(visitor_id))) or 0


def test_an_agent_attaches_a_file_and_gets_its_url(stack: Stack) -> None:
    tenant = stack.bootstrap("ada")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))
    agent = logged_in_agent(stack.base_url, tenant)

    response = attach(agent, conversation_id, "Invoice (May).pdf", PDF, "application/octet-stream")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == "Invoice_May.pdf"
    assert body["content_type"] == "application/pdf"  # from the bytes, not from what the browser said
    assert body["size"] == len(PDF)
    assert body["url"] == f"{stack.base_url}/attachments/{body['id']}/Invoice_May.pdf"
    assert agent.client.get(body["url"]).content == PDF


def test_the_conversations_visitor_opens_the_agents_file_and_no_other_visitor_can(stack: Stack) -> None:
    tenant, other_tenant = stack.bootstrap("bo"), stack.bootstrap("cy")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))
    stranger, _ = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))
    url = attach(logged_in_agent(stack.base_url, tenant), conversation_id, "photo.png", tiny_png()).json()["url"]

    opened = httpx.get(url, params={"token": visitor.token})

    assert opened.status_code == 200
    assert opened.content == tiny_png()
    assert opened.headers["content-type"] == "image/png"
    assert httpx.get(url, params={"token": stranger.token}).status_code == 404
    assert httpx.get(url).status_code == 404
    assert logged_in_agent(stack.base_url, other_tenant).client.get(url).status_code == 404


def test_the_visitor_receives_the_reply_with_the_file_link(stack: Stack) -> None:
    tenant = stack.bootstrap("di")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))
    agent = logged_in_agent(stack.base_url, tenant)
    url = attach(agent, conversation_id, "photo.png", tiny_png()).json()["url"]

    async def scenario() -> dict[str, Any]:
        await visitor.connect(last_seq=1)
        assert agent.reply(conversation_id, f"Here it is:\n{url}\n").status_code in (200, 201, 204)
        message = await visitor.expect("message")
        await visitor.close()
        return message

    message = asyncio.run(scenario())

    assert message["sender"] == "agent"
    assert url in message["body"]
    assert f'<a class="attachment" href="{url}"' in agent.conversation_page(conversation_id)


def test_without_the_csrf_token_nothing_is_stored(stack: Stack) -> None:
    tenant = stack.bootstrap("ed")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))

    response = attach(logged_in_agent(stack.base_url, tenant), conversation_id, "photo.png", tiny_png(), csrf=False)

    assert response.status_code == 400
    assert count_for(str(visitor.visitor_id)) == 0


def test_a_logged_out_browser_cannot_attach(stack: Stack) -> None:
    tenant = stack.bootstrap("fa")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))

    response = httpx.post(
        f"{stack.base_url}/console/c/{conversation_id}/attachments", files={"file": ("a.png", tiny_png())}
    )

    assert response.status_code in (302, 401)
    assert count_for(str(visitor.visitor_id)) == 0


def test_another_tenants_conversation_is_not_found(stack: Stack) -> None:
    tenant, other_tenant = stack.bootstrap("gi"), stack.bootstrap("ha")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))

    response = attach(logged_in_agent(stack.base_url, other_tenant), conversation_id, "photo.png", tiny_png())
    unknown = attach(logged_in_agent(stack.base_url, tenant), str(uuid.uuid4()), "photo.png", tiny_png())

    assert response.status_code == 404
    assert unknown.status_code == 404
    assert count_for(str(visitor.visitor_id)) == 0


def test_html_named_png_is_refused_by_its_content(stack: Stack) -> None:
    tenant = stack.bootstrap("io")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))

    response = attach(logged_in_agent(stack.base_url, tenant), conversation_id, "cute.png", HTML)

    assert response.status_code == 415
    assert response.json()["error"] == "type_not_allowed"
    assert response.json()["message"] == (
        "This file type is not allowed. Allowed: PNG, JPEG, GIF, WebP, PDF, plain text."
    )
    assert count_for(str(visitor.visitor_id)) == 0


def test_a_file_over_the_visitors_size_limit_is_refused(stack: Stack) -> None:
    tenant = stack.bootstrap("jo")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))
    with stack.another_web(DESKBELL_UPLOAD_BYTES="1000") as base_url:
        agent = logged_in_agent(base_url, tenant)
        at_limit = attach(agent, conversation_id, "ok.txt", b"a" * 1000, "text/plain")

        over = attach(agent, conversation_id, "big.txt", b"a" * 1001, "text/plain")
        far_over = attach(agent, conversation_id, "huge.txt", b"a" * 2_000_000, "text/plain")

    assert at_limit.status_code == 201
    for response in (over, far_over):  # far over: refused by the request's body limit, before the form is read
        assert response.status_code == 413
        assert response.json() == {"error": "too_large", "message": "The file is larger than 1000 bytes."}
    assert count_for(str(visitor.visitor_id)) == 1


def test_agents_are_not_held_to_the_visitors_hourly_upload_count(stack: Stack) -> None:
    tenant = stack.bootstrap("ka")
    visitor, conversation_id = visitor_in_conversation(stack.base_url, str(tenant["site_key"]))
    agent = logged_in_agent(stack.base_url, tenant)

    answers = [attach(agent, conversation_id, f"{n}.txt", b"note", "text/plain").status_code for n in range(21)]

    assert answers == [201] * 21
