"""In a real headless Chromium: while every agent is busy, the widget shows the visitor's place in line and the
estimated wait, and counts down live as the agent finishes chats (issue 8; docs/protocol.md, the `queue` frame)."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import BackgroundLoop, Visitor, eventually
from tests.conftest import Stack
from tests.factories import tenant_id_of
from tests.test_routing_queue import conversations, log_in, resolve, set_capacity, set_routing

pytestmark = pytest.mark.browser


async def write(stack: Stack, site_key: str, body: str) -> tuple[Visitor, uuid.UUID]:
    visitor = Visitor(stack.base_url, site_key)
    await visitor.connect()
    await visitor.send({"type": "message", "client_id": "first", "body": body})
    return visitor, uuid.UUID((await visitor.expect("ack"))["conversation_id"])


def test_the_widget_shows_the_place_in_line_and_counts_down_live(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("kim")
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=0)
    login = tenant["agents"][0]
    set_capacity(tid, login["email"], 1)  # Kim takes one chat at a time
    kim = log_in(stack, login)
    loop = BackgroundLoop()
    sockets: list[Visitor] = []
    try:
        # A chat Kim already finished: the estimate has a handling time to go by.
        visitor, done = loop.run(write(stack, tenant["site_key"], "An earlier question"))
        sockets.append(visitor)
        eventually(lambda: conversations(tid)[done].assignee_id is not None, "the earlier chat assigned")
        resolve(kim, done)

        # Two visitors ahead: the first is with Kim, the second waits.
        first_visitor, first = loop.run(write(stack, tenant["site_key"], "First in line"))
        second_visitor, second = loop.run(write(stack, tenant["site_key"], "Second in line"))
        sockets += [first_visitor, second_visitor]
        eventually(lambda: conversations(tid)[first].assignee_id is not None, "the first with Kim")

        page = browser.new_context().new_page()
        page.goto(f"{stack.base_url}/demo?site_key={tenant['site_key']}")
        page.get_by_role("button", name="Open chat").click()
        box = page.get_by_role("textbox", name="Message")
        box.fill("Is anyone there?")
        box.press("Enter")
        expect(page.locator(".m.visitor", has_text="Is anyone there?")).to_have_attribute("data-state", "sent")
        line = page.locator(".queue")
        expect(line).to_have_text("You are number 2 in line — about 1 min")

        # Kim finishes the first chat: the second visitor is served, and this one moves up.
        resolve(kim, first)
        expect(line).to_have_text("You are number 1 in line — about 1 min")

        # Kim finishes the second: this visitor's turn, and the line is gone from the widget.
        resolve(kim, second)
        expect(line).to_be_hidden()
        mine = eventually(
            lambda: [c for c in conversations(tid).values() if c.last_message_preview == "Is anyone there?"],
            "the browser visitor's conversation stored",
        )
        assert mine[0].assignee_id is not None
    finally:
        for visitor in sockets:
            loop.run(visitor.close())
        loop.close()
