"""Search and the visitor panel in headless Chromium against the running stack: a visitor chats through the
widget on a site's page that set custom attributes, and an agent finds the message by typing a word in the console's
search box, opens it, and sees who the visitor is (docs/architecture.md, "The console: search and the visitor
panel")."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from desk.db import system_session
from desk.models import Conversation
from tests.clients import open_console
from tests.conftest import Stack
from tests.e2e.test_widget import host_page, new_context, serve, shop_url

pytestmark = pytest.mark.browser


def send_from_widget(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    if not box.is_visible():
        page.get_by_role("button", name="Open chat").click()
    box.fill(text)
    box.press("Enter")
    expect(page.locator(".m.visitor", has_text=text)).to_have_attribute("data-state", "sent")


def conversations_of(visitor_id: str) -> list[uuid.UUID]:
    """The visitor's conversations, oldest first."""
    with system_session() as session:
        query = select(Conversation.id).where(Conversation.visitor_id == uuid.UUID(visitor_id))
        return list(session.scalars(query.order_by(Conversation.created_at)))


def resolve(conversation_id: uuid.UUID) -> None:
    """Done with (the resolve button is another part's): the visitor's next message starts a new conversation."""
    with system_session() as session:
        session.get(Conversation, conversation_id).status = "resolved"
        session.commit()


def test_an_agent_finds_a_message_by_a_word_and_sees_who_wrote_it(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    tenant = stack.bootstrap("zoe")
    shop = new_context(browser, timezone_id="Asia/Shanghai")
    visitor = shop.new_page()
    stub = (
        "<script>window.Deskbell = window.Deskbell || {q: []};"
        "Deskbell.q.push(['setAttributes', {plan: 'pro', order: '<b>A-17</b>'}]);"
        "Deskbell.q.push(['on', 'ready', function (r) { window.readyWith = r; }]);</script>"
    )
    serve(shop, shop_url(stack), host_page(stack, str(tenant["site_key"]), before=stub))
    visitor.goto(shop_url(stack))
    visitor.wait_for_function("window.readyWith && window.readyWith.visitor_id")
    visitor_id = visitor.evaluate("window.readyWith.visitor_id")
    send_from_widget(visitor, "Where is my invoice for March?")
    [earlier] = conversations_of(visitor_id)
    resolve(earlier)
    send_from_widget(visitor, "My parcel never arrived, the tracking is stuck")
    [_, latest] = conversations_of(visitor_id)

    agent = browser.new_context().new_page()
    open_console(agent, stack.base_url, tenant["agents"][0])  # htmx is listening before the box is typed in
    agent.locator("#search").fill("parc")
    hit = agent.locator("#search-dropdown a", has_text="never arrived")
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text("parcel")
    agent.screenshot(path=str(artifacts / "console-search-dropdown.png"))
    href = hit.get_attribute("href")
    assert href is not None and href.startswith(f"/console/c/{latest}#msg-")
    hit.click()

    message = agent.locator(href[href.index("#") :])
    expect(message).to_be_visible()
    expect(message).to_contain_text("My parcel never arrived")
    panel = agent.locator(f'.pane[data-conversation="{latest}"] .visitor-panel')
    expect(panel.locator(".local-time")).to_have_text(re.compile(r"^\d\d:\d\d \(UTC\+8\)$"))
    attributes = panel.locator(".attributes")
    expect(attributes).to_contain_text("plan")
    expect(attributes).to_contain_text("pro")
    expect(attributes).to_contain_text("<b>A-17</b>")  # the site's text, shown as text
    assert attributes.locator("b").count() == 0
    agent.screenshot(path=str(artifacts / "console-search-visitor-panel.png"))

    panel.locator(".earlier-conversations a").click()
    expect(agent.locator(f'.pane[data-conversation="{earlier}"]')).to_be_visible()
    expect(agent.locator(f'.pane[data-conversation="{earlier}"] .msg-visitor')).to_have_text(
        re.compile("Where is my invoice for March?")
    )

    # Enter opens the full results page.
    agent.locator("#search").fill("invoice march")
    agent.locator("#search").press("Enter")
    expect(agent).to_have_url(re.compile(r"/console/search\?q=invoice\+march$"))
    expect(agent.locator(".message-hit mark")).to_have_text(["invoice", "March"])
    agent.screenshot(path=str(artifacts / "console-search-page.png"))
    shop.close()
