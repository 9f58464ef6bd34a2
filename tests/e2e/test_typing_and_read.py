"""In a real headless Chromium: each side sees the other typing, and the visitor sees the agent read them."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import log_in_page
from tests.conftest import Stack

pytestmark = pytest.mark.browser


def test_typing_shows_on_both_sides_and_the_visitors_message_turns_read(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("nina")
    login = tenant["agents"][0]

    agent = browser.new_context().new_page()
    log_in_page(agent, stack.base_url, login)
    expect(agent.get_by_text("No conversations yet.")).to_be_visible()

    visitor = browser.new_context().new_page()
    visitor.goto(f"{stack.base_url}/demo?site_key={tenant['site_key']}")
    visitor.get_by_role("button", name="Open chat").click()
    box = visitor.get_by_role("textbox", name="Message")
    box.fill("Where is my parcel?")
    box.press("Enter")
    mine = visitor.locator(".m.visitor", has_text="Where is my parcel?")
    expect(mine).to_have_attribute("data-state", "sent")  # nobody has opened it yet

    # The agent opens the conversation as a tab: the page is visible, so the visitor's message is read.
    with agent.expect_response(lambda response: "/pane" in response.url):
        agent.locator("#conversation-list a", has_text="Where is my parcel?").click()
    expect(agent.locator(".pane.active .thread .msg-visitor", has_text="Where is my parcel?")).to_be_visible()
    expect(mine).to_have_attribute("data-state", "read")
    expect(mine.locator(".st")).to_have_text("Read")

    # The visitor types: the console says so under the thread.
    box.press_sequentially("It was due on Monday, and still nothing", delay=80)
    typing = agent.locator(".pane.active .typing")
    expect(typing).to_be_visible()
    expect(typing).to_have_text("Visitor is typing…")
    expect(typing).to_be_hidden(timeout=10000)  # gone 4 s after the last one

    # The agent types: the widget names them.
    agent.get_by_role("textbox", name="Reply").press_sequentially("Let me check", delay=50)
    expect(visitor.get_by_text("Nina is typing…")).to_be_visible()
    agent.get_by_role("button", name="Send").click()
    expect(visitor.locator(".m.agent", has_text="Let me check")).to_be_visible()
    expect(visitor.get_by_text("Nina is typing…")).to_be_hidden()  # the reply replaces the indicator

    # Read survives a reload: the welcome carries it.
    visitor.reload()
    visitor.get_by_role("button", name="Open chat").click()
    expect(visitor.locator(".m.visitor", has_text="Where is my parcel?")).to_have_attribute("data-state", "read")
