"""In a real headless Chromium: a visitor on the demo page and an agent in the console chat both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import log_in_page
from tests.conftest import Stack

pytestmark = pytest.mark.browser


def test_visitor_widget_and_agent_console_exchange_messages(stack: Stack, browser: Browser, artifacts: Path) -> None:
    tenant = stack.bootstrap("carol")
    agent_login = tenant["agents"][0]

    agent = browser.new_context().new_page()
    log_in_page(agent, stack.base_url, agent_login)
    expect(agent.get_by_text("No conversations yet.")).to_be_visible()

    visitor = browser.new_context().new_page()
    visitor.goto(f"{stack.base_url}/demo?site_key={tenant['site_key']}")
    visitor.get_by_role("button", name="Open chat").click()
    box = visitor.get_by_role("textbox", name="Message")
    box.fill("Hello, is anyone there?")
    box.press("Enter")
    sent = visitor.locator(".m.visitor", has_text="Hello, is anyone there?")
    expect(sent).to_have_attribute("data-state", "sent")

    # The new conversation appears in the agent's inbox without a reload.
    row = agent.locator("#conversation-list a", has_text="Hello, is anyone there?")
    expect(row).to_be_visible()
    row.click()
    expect(agent.locator(".pane.active .thread .msg-visitor", has_text="Hello, is anyone there?")).to_be_visible()
    agent.get_by_role("textbox", name="Reply").fill("Hi! I'm Carol. How can I help?")
    agent.get_by_role("button", name="Send").click()
    expect(agent.locator(".pane.active .thread .msg-agent", has_text="How can I help?")).to_be_visible()
    expect(agent.get_by_role("textbox", name="Reply")).to_have_value("")

    expect(visitor.locator(".m.agent", has_text="Hi! I'm Carol. How can I help?")).to_be_visible()
    box.fill("I need a refund <b>please</b>")
    box.press("Enter")
    # Live in the open conversation, shown as text, not HTML.
    expect(agent.locator(".pane.active .thread .msg-visitor", has_text="I need a refund <b>please</b>")).to_be_visible()
    assert agent.locator(".pane.active .thread b").count() == 0

    visitor.screenshot(path=str(artifacts / "demo-widget.png"))
    agent.screenshot(path=str(artifacts / "agent-console.png"))
