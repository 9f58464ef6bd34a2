"""Where a proxy blocks WebSockets, the widget chats over long-polling with the same guarantees."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import Agent
from tests.conftest import Stack
from tests.faults.proxy import Proxy

pytestmark = pytest.mark.browser


def test_widget_falls_back_to_long_polling_when_websockets_are_blocked(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    tenant = stack.bootstrap("hana")
    login = tenant["agents"][0]
    proxy = Proxy(int(stack.base_url.rsplit(":", 1)[1]), strip_websocket=True).start()
    try:
        visitor = browser.new_context().new_page()
        visitor.goto(f"http://127.0.0.1:{proxy.port}/demo?site_key={tenant['site_key']}")
        visitor.get_by_role("button", name="Open chat").click()
        box = visitor.get_by_role("textbox", name="Message")
        for text in ("First over polling", "Second over polling"):
            box.fill(text)
            box.press("Enter")
        for text in ("First over polling", "Second over polling"):
            expect(visitor.locator(".m.visitor", has_text=text)).to_have_attribute("data-state", "sent", timeout=20000)
        assert proxy.refused_upgrades >= 2, "the widget should have tried WebSockets first"

        agent = Agent(stack.base_url)
        agent.login(login["email"], login["password"])
        conversation_id = agent.client.get("/console").text.split("/console/c/")[1].split('"')[0]
        assert agent.thread(conversation_id) == ["First over polling", "Second over polling"]
        assert agent.reply(conversation_id, "Polling works too.").status_code == 200
        expect(visitor.locator(".m.agent", has_text="Polling works too.")).to_be_visible(timeout=30000)
        visitor.screenshot(path=str(artifacts / "long-polling-widget.png"))
    finally:
        proxy.stop()
