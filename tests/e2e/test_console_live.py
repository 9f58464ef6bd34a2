"""The console's live stream survives a dropped connection: what was missed appears without a reload."""

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

    async def send(*bodies: str) -> str:
        if visitor.ws is None:
            await visitor.connect()
        conversation = ""
        for body in bodies:
            await visitor.send({"type": "message", "client_id": uuid.uuid4().hex, "body": body})
            conversation = (await visitor.expect("ack"))["conversation_id"]
        return conversation

    loop = BackgroundLoop()  # the visitor's socket outlives each step; Playwright owns this thread's loop
    try:
        conversation = loop.run(send("Before the drop"))
        proxy = Proxy(int(stack.base_url.rsplit(":", 1)[1])).start()
        try:
            agent = browser.new_context().new_page()
            console = f"http://127.0.0.1:{proxy.port}"
            log_in_page(agent, console, login)
            agent.goto(f"{console}/console/c/{conversation}")
            expect(agent.locator("#thread .msg-visitor", has_text="Before the drop")).to_be_visible()
            agent.wait_for_timeout(500)  # the stream is open

            proxy.set("reset")  # the server side of the stream is gone, and stays gone for a while
            loop.run(send("Missed one", "Missed two", "Missed three"))
            time.sleep(2)
            proxy.set("pass")
            for body in ("Missed one", "Missed two", "Missed three"):
                expect(agent.locator("#thread .msg-visitor", has_text=body)).to_have_count(1, timeout=20000)
            bodies = agent.locator("#thread .msg .body").all_inner_texts()
            assert bodies == ["Before the drop", "Missed one", "Missed two", "Missed three"]
            assert "Missed three" in agent.locator("#conversation-list").inner_text()
        finally:
            proxy.stop()
        loop.run(visitor.close())
    finally:
        loop.close()
