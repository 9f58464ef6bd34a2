"""Agents attach files in the browser (docs/widget.md, "Attachments"): the composer's paperclip uploads the file and
puts its URL in the reply; the console shows a thumbnail, and the visitor's widget a link that opens the image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.clients import log_in_page
from tests.conftest import Stack
from tests.test_attachments import HTML, tiny_png

pytestmark = pytest.mark.browser


def test_an_agent_attaches_an_image_and_the_visitor_opens_it(stack: Stack, browser: Browser, artifacts: Path) -> None:
    tenant = stack.bootstrap("lou")
    visitor = browser.new_context().new_page()
    visitor.goto(f"{stack.base_url}/demo?site_key={tenant['site_key']}")
    visitor.get_by_role("button", name="Open chat").click()
    box = visitor.get_by_role("textbox", name="Message")
    box.fill("Can I see the colour?")
    box.press("Enter")
    expect(visitor.locator(".m.visitor", has_text="Can I see the colour?")).to_have_attribute("data-state", "sent")

    agent = browser.new_context().new_page()
    log_in_page(agent, stack.base_url, tenant["agents"][0])
    agent.locator("#conversation-list a", has_text="Can I see the colour?").click()
    reply = agent.get_by_role("textbox", name="Reply")
    reply.fill("Here it is:")
    picker = agent.locator(".composer input[type=file]")

    picker.set_input_files({"name": "page.png", "mimeType": "image/png", "buffer": HTML})
    expect(agent.get_by_role("alert")).to_contain_text("This file type is not allowed")
    expect(reply).to_have_value("Here it is:")
    agent.screenshot(path=str(artifacts / "agent-attachment-refused.png"))
    big = b"a" * (10 * 1024 * 1024 + 1)
    picker.set_input_files({"name": "big.txt", "mimeType": "text/plain", "buffer": big})
    expect(agent.get_by_role("alert")).to_have_text("big.txt is larger than 10 MB: not attached.")

    expect(agent.get_by_role("button", name="Attach a file")).to_be_visible()
    picker.set_input_files({"name": "red sample.png", "mimeType": "image/png", "buffer": tiny_png()})
    url = re.escape(stack.base_url) + r"/attachments/[0-9a-f-]{36}/red_sample\.png"
    expect(reply).to_have_value(re.compile(rf"Here it is:\n{url}\n"))  # the URL on its own line
    expect(agent.get_by_role("alert")).to_have_count(0)
    agent.screenshot(path=str(artifacts / "agent-attachment-composer.png"))
    agent.get_by_role("button", name="Send").click()

    sent = agent.locator(".msg.msg-agent", has_text="Here it is:")
    expect(sent.locator("a.attachment")).to_have_text("red_sample.png")
    expect(sent.locator("img.thumb")).to_be_visible()
    assert sent.locator("img.thumb").evaluate("img => img.naturalWidth") == 1

    received = visitor.locator(".m.agent", has_text="Here it is:")
    link = received.locator("a")
    expect(link).to_have_attribute("href", re.compile(rf"^{url}\?token="))  # the visitor's own token opens it
    opened = visitor.request.get(link.get_attribute("href") or "")
    assert opened.status == 200
    assert opened.body() == tiny_png()
    assert visitor.request.get(link.get_attribute("href").split("?")[0]).status == 404  # no token, no file
    visitor.screenshot(path=str(artifacts / "widget-agent-attachment.png"))
