"""Attachments in the browser (docs/widget.md): the visitor picks a file with the paperclip, the widget uploads it
and sends its link as a message, and the agent's console shows the link and a thumbnail."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import log_in_page, logged_in_agent
from tests.conftest import Stack
from tests.e2e.test_widget import conversation_of, host_page, new_context, serve, shop_url
from tests.test_attachments import HTML, tiny_png

pytestmark = pytest.mark.browser


def test_a_visitor_attaches_an_image_and_the_agent_sees_it(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("ivy")
    context = new_context(browser)
    page = context.new_page()
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"])))
    page.goto(shop_url(stack))
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_text("Away — leave us a message")).to_be_visible()  # the session has answered
    picker = page.locator("deskbell-widget input[type=file]")

    picker.set_input_files({"name": "cute.png", "mimeType": "image/png", "buffer": HTML})
    expect(page.get_by_text("This file type is not allowed")).to_be_visible()
    expect(page.locator(".m.visitor")).to_have_count(0)

    expect(page.get_by_role("button", name="Attach a file")).to_be_visible()
    picker.set_input_files({"name": "photo.png", "mimeType": "image/png", "buffer": tiny_png()})
    sent = page.locator(".m.visitor", has_text="📎 photo.png")
    expect(sent).to_have_attribute("data-state", "sent")
    expect(page.get_by_text("This file type is not allowed")).to_be_hidden()
    link = sent.locator("a")
    assert "/attachments/" in (link.get_attribute("href") or "")
    assert page.request.get(link.get_attribute("href") or "").body() == tiny_png()  # the visitor's own, by token

    agent_page = context.new_page()
    log_in_page(agent_page, stack.base_url, tenant["agents"][0])
    conversation_id = conversation_of(logged_in_agent(stack.base_url, tenant))
    agent_page.goto(f"{stack.base_url}/console/c/{conversation_id}")
    attachment = agent_page.locator(".pane.active .thread .msg-visitor a.attachment")
    expect(attachment).to_have_text("photo.png")
    thumb = agent_page.locator(".pane.active .thread .msg-visitor img.thumb")
    expect(thumb).to_be_visible()
    assert thumb.evaluate("img => img.naturalWidth") == 1  # served to the agent, same origin as the console
    context.close()


def test_a_file_over_the_limit_is_refused_before_it_is_sent(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("jay")
    context = new_context(browser)
    page = context.new_page()
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"])))
    page.goto(shop_url(stack))
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_text("Away — leave us a message")).to_be_visible()  # the session has answered

    big = b"a" * (10 * 1024 * 1024 + 1)
    page.locator("deskbell-widget input[type=file]").set_input_files(
        {"name": "big.txt", "mimeType": "text/plain", "buffer": big}
    )

    expect(page.get_by_text("File too large (max 10 MB)")).to_be_visible()
    expect(page.locator(".m.visitor")).to_have_count(0)
    context.close()
