"""The widget with the site's settings (issue 4) in headless Chromium, against the running stack: welcome text
and colour, "leave a message" with an email when no agent is online, emoji, and grouped messages. Host pages are
served as in test_widget.py, from another origin than the stack's."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import logged_in_agent
from tests.conftest import Stack
from tests.e2e.test_widget import conversation_of, host_page, new_context, serve, shop_url

pytestmark = pytest.mark.browser


def open_widget(stack: Stack, browser: Browser, tenant: dict[str, object]) -> Page:
    context = new_context(browser, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"])))
    page.goto(shop_url(stack))
    page.get_by_role("button", name="Open chat").click()
    return page


def test_the_welcome_text_colour_and_position_come_from_the_site_settings(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap(options=("--welcome", "en=Welcome to Ada's <b>shop</b>", "--color", "#aa3300"))
    page = open_widget(stack, browser, tenant)

    expect(page.locator(".m.welcome")).to_have_text("Welcome to Ada's <b>shop</b>")
    launcher = page.locator("deskbell-widget .launch")
    expect(launcher).to_have_css("background-color", "rgb(170, 51, 0)")
    expect(page.locator(".head")).to_have_css("background-color", "rgb(170, 51, 0)")
    assert launcher.bounding_box()["x"] > 1000  # right, the default
    page.context.close()


def test_with_no_agent_online_the_visitor_leaves_a_message_with_an_email(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("lena", options=("--position", "left"))  # no agent has logged in: nobody is online
    page = open_widget(stack, browser, tenant)
    expect(page.get_by_text("Away — leave us a message")).to_be_visible()
    assert page.locator("deskbell-widget .launch").bounding_box()["x"] < 100
    email = page.get_by_role("textbox", name="Your email, so we can reply")
    box = page.get_by_role("textbox", name="Message")

    email.fill("not an email")
    box.fill("Do you ship to Norway?")
    box.press("Enter")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".m.visitor")).to_have_count(0)
    email.fill("lars@example.no")
    box.fill("Do you ship to Norway?")
    box.press("Enter")

    expect(page.locator(".m.visitor", has_text="Do you ship to Norway?")).to_have_attribute("data-state", "sent")
    expect(email).to_be_hidden()
    agent = logged_in_agent(stack.base_url, tenant)
    conversation_id = conversation_of(agent)
    assert agent.thread(conversation_id) == ["Do you ship to Norway?"]
    deadline = time.monotonic() + 10
    while "lars@example.no" not in (html := agent.conversation_page(conversation_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert re.search(r"lars@example.no\s*<span[^>]*>\(given by the visitor\)", html)

    page.reload()  # the agent is online now
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_text("Online — we reply in a few minutes")).to_be_visible()
    expect(email).to_be_hidden()
    page.context.close()


def test_emoji_are_inserted_at_the_cursor_from_the_keyboard(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap()
    page = open_widget(stack, browser, tenant)
    box = page.get_by_role("textbox", name="Message")
    box.fill("Thanks !")
    box.evaluate("e => e.setSelectionRange(7, 7)")
    emoji = page.get_by_role("button", name="Emoji")

    emoji.click()
    grid = page.get_by_role("group", name="Emoji")
    expect(grid).to_be_visible()
    expect(grid.get_by_role("button").first).to_be_focused()
    page.keyboard.press("Escape")  # closes the grid, not the panel
    expect(grid).to_be_hidden()
    expect(emoji).to_be_focused()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Enter")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")

    expect(box).to_have_value("Thanks 😂!")
    expect(box).to_be_focused()
    expect(grid).to_be_hidden()
    box.press("Enter")
    box.fill("And one more thing")
    box.press("Enter")
    mine = page.locator(".m.visitor")
    expect(mine).to_have_count(2)
    expect(mine.nth(0).locator(".who")).to_be_visible()
    expect(mine.nth(1).locator(".who")).to_be_hidden()  # the same sender within 2 minutes: named once
    expect(mine.nth(1)).to_have_attribute("data-state", "sent")
    page.context.close()
