"""In Chromium: the agent's open pane shows a thread in the order its messages were accepted while two store
workers share them, live and after a reload (docs/architecture.md, "Order")."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import BackgroundLoop, Visitor, log_in_page, logged_in_agent
from tests.conftest import Stack
from tests.test_message_order import Composer, second_store_worker  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser

REPLIES = 40


def test_the_open_pane_shows_replies_and_visitor_messages_in_sent_order(
    stack: Stack, browser: Browser, second_store_worker: str  # noqa: F811
) -> None:
    tenant = stack.bootstrap("olga")
    visitor = Visitor(stack.base_url, tenant["site_key"])

    async def say(body: str) -> str:
        if visitor.ws is None:
            await visitor.connect()
        await visitor.send({"type": "message", "client_id": uuid.uuid4().hex, "body": body})
        return (await visitor.expect("ack", timeout=60))["conversation_id"]

    loop = BackgroundLoop()  # the visitor's socket lives across steps; Playwright owns this thread's loop
    try:
        conversation = loop.run(say("visitor 0"))
        page = browser.new_context().new_page()
        log_in_page(page, stack.base_url, tenant["agents"][0])
        page.goto(f"{stack.base_url}/console/c/{conversation}")
        pane = page.locator(f"#pane-{conversation}")
        expect(pane.locator(".thread .msg .body")).to_have_count(1)

        composer = Composer(logged_in_agent(stack.base_url, tenant), conversation)  # a second tab, over HTTP
        sent = ["visitor 0"]
        for i in range(1, REPLIES + 1):
            composer.send(f"reply {i}")
            sent.append(f"reply {i}")
            if i % 4 == 0:
                loop.run(say(f"visitor {i}"))
                sent.append(f"visitor {i}")

        expect(pane.locator(".thread .msg .body")).to_have_count(len(sent), timeout=60_000)
        assert pane.locator(".thread .msg .body").all_inner_texts() == sent, "live, as they were accepted"
        page.reload()
        reloaded = page.locator(f"#pane-{conversation} .thread .msg .body")
        expect(reloaded).to_have_count(len(sent))
        assert reloaded.all_inner_texts() == sent, "after a reload"
        loop.run(visitor.close())
    finally:
        loop.close()
