"""The console's live stream survives a dropped connection: what was missed appears without a reload, in every
open pane and in the list."""

from __future__ import annotations

import time
import uuid

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import BackgroundLoop, Visitor, log_in_page
from tests.conftest import Stack
from tests.faults.proxy import Proxy

pytestmark = pytest.mark.browser


def test_console_catches_up_after_its_update_stream_drops(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("ivy")
    login = tenant["agents"][0]
    visitor = Visitor(stack.base_url, tenant["site_key"])
    other = Visitor(stack.base_url, tenant["site_key"])

    async def send(who: Visitor, *bodies: str) -> str:
        if who.ws is None:
            await who.connect()
        conversation = ""
        for body in bodies:
            await who.send({"type": "message", "client_id": uuid.uuid4().hex, "body": body})
            conversation = (await who.expect("ack"))["conversation_id"]
        return conversation

    loop = BackgroundLoop()  # the visitors' sockets outlive each step; Playwright owns this thread's loop
    try:
        conversation = loop.run(send(visitor, "Before the drop"))
        loop.run(send(other, "Another chat"))
        proxy = Proxy(int(stack.base_url.rsplit(":", 1)[1])).start()
        try:
            agent = browser.new_context().new_page()
            console = f"http://127.0.0.1:{proxy.port}"
            log_in_page(agent, console, login)
            agent.goto(f"{console}/console/c/{conversation}")
            expect(agent.locator(".pane.active .thread .msg-visitor", has_text="Before the drop")).to_be_visible()
            # A second conversation open as another tab: several panes are in the page.
            agent.locator("#conversation-list a", has_text="Another chat").click()
            expect(agent.locator(".pane.active .thread .msg-visitor", has_text="Another chat")).to_be_visible()
            expect(agent.locator("#panes > .pane")).to_have_count(2)
            agent.wait_for_timeout(500)  # the stream is open

            proxy.set("reset")  # the server side of the stream is gone, and stays gone for a while
            loop.run(send(visitor, "Missed one", "Missed two", "Missed three"))
            loop.run(send(other, "Missed elsewhere"))
            time.sleep(2)
            proxy.set("pass")

            # The active pane (the other chat) and the list catch up without a reload...
            expect(agent.locator(".pane.active .thread .msg-visitor", has_text="Missed elsewhere")).to_have_count(
                1, timeout=20000
            )
            expect(agent.locator("#conversation-list")).to_contain_text("Missed three", timeout=20000)
            # ...and so does the pane in the background tab: switch to it, no request needed.
            agent.locator(f'.tabstrip .tab[data-conversation="{conversation}"] .tab-open').click()
            pane = agent.locator(f"#pane-{conversation}")
            expect(pane).to_be_visible()
            for body in ("Missed one", "Missed two", "Missed three"):
                expect(pane.locator(".thread .msg-visitor", has_text=body)).to_have_count(1, timeout=20000)
            bodies = pane.locator(".thread .msg .body").all_inner_texts()
            assert bodies == ["Before the drop", "Missed one", "Missed two", "Missed three"]
            assert agent.url == f"{console}/console/c/{conversation}"
        finally:
            proxy.stop()
        loop.run(visitor.close())
        loop.run(other.close())
    finally:
        loop.close()
