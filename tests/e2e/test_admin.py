"""The issue's browser test of the admin panel (docs/admin.md): an owner creates a site and copies its snippet, the
snippet goes on a page of a shop (served by a small HTTP server of the test's, on another origin), the owner
invites an agent by link, the agent joins in another browser and logs in, and a visitor on the shop's page chats
with that agent."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from desk.embedded import free_port
from tests.clients import log_in_page
from tests.conftest import Stack

pytestmark = pytest.mark.browser


class Shop:
    """A customer's website: one page, /, with whatever the test pastes into it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.pasted = ""
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = (
                    "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title></head>"
                    f"<body><h1>Our shop</h1>{shop.pasted}</body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    @property
    def origin(self) -> str:
        # "localhost", not the stack's 127.0.0.1: another origin, as a customer's site is.
        return f"http://localhost:{self.port}"


@pytest.fixture
def shop() -> Iterator[Shop]:
    found = Shop()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def accept_dialogs(page: Page) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


def test_an_admin_sets_up_a_site_and_an_invited_agent_chats_with_a_visitor_on_it(
    stack: Stack, browser: Browser, shop: Shop, artifacts: Path
) -> None:
    tenant = stack.bootstrap()
    owner_login = {"email": str(tenant["owner_email"]), "password": str(tenant["owner_password"])}

    admin_context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    admin = admin_context.new_page()
    accept_dialogs(admin)
    violations: list[str] = []
    admin.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    admin.on("pageerror", lambda error: violations.append(str(error)))
    log_in_page(admin, stack.base_url, owner_login)
    admin.wait_for_url(f"{stack.base_url}/console")

    # A site for the shop, allowed on the shop's origin.
    admin.goto(f"{stack.base_url}/admin/sites")
    admin.get_by_label("Name").fill("Our shop")
    admin.get_by_label("Allowed origins").fill(shop.origin)
    admin.get_by_role("button", name="Create site").click()
    expect(admin.get_by_role("heading", name="Site: Our shop")).to_be_visible()
    expect(admin.get_by_role("status")).to_contain_text("Put its snippet on your pages.")
    admin.get_by_role("button", name="Copy").first.click()
    expect(admin.get_by_text("Copied.").first).to_be_visible()
    snippet = admin.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(
        rf'<script src="{re.escape(stack.base_url)}/widget.js" data-site="[\w-]+" async></script>', snippet
    ), snippet
    assert snippet == html.unescape(admin.locator("#snippet").inner_text())
    shop.pasted = snippet

    # An invitation by link.
    admin.get_by_role("navigation", name="Admin").get_by_role("link", name="Agents").click()
    expect(admin.get_by_role("heading", name="Agents")).to_be_visible()
    admin.get_by_label("Email").fill("lena@shop.test")
    admin.get_by_role("button", name="Create invitation link").click()
    link = admin.locator("#invite-link").inner_text().strip()
    assert link.startswith(f"{stack.base_url}/invite/")
    admin.screenshot(path=str(artifacts / "admin-invite.png"))
    assert violations == [], "the admin pages broke the CSP or threw"
    # The owner logs out, so the visitor's conversation goes to the one agent online.
    admin.get_by_role("button", name="Log out").click()
    admin.wait_for_url(re.compile(r".*/login"))

    agent = browser.new_context().new_page()
    agent.goto(link)
    expect(agent.get_by_text("lena@shop.test")).to_be_visible()
    agent.get_by_label("Your name").fill("Lena")
    agent.get_by_label("Password", exact=True).fill("correct horse battery")
    agent.get_by_label("Password again").fill("correct horse battery")
    agent.get_by_role("button", name="Join").click()
    agent.wait_for_url(f"{stack.base_url}/console")
    expect(agent.get_by_text("No conversations yet.")).to_be_visible()

    visitor_context = browser.new_context(permissions=["local-network-access"])
    visitor = visitor_context.new_page()
    visitor.goto(shop.origin + "/")
    visitor.get_by_role("button", name="Open chat").click()
    box = visitor.get_by_role("textbox", name="Message")
    box.fill("Do you ship to Lisbon?")
    box.press("Enter")
    expect(visitor.locator(".m.visitor", has_text="Do you ship to Lisbon?")).to_have_attribute("data-state", "sent")

    row = agent.locator("#conversation-list a", has_text="Do you ship to Lisbon?")
    expect(row).to_be_visible()
    row.click()
    expect(agent.locator(".pane.active .thread .msg-visitor", has_text="Do you ship to Lisbon?")).to_be_visible()
    agent.get_by_role("textbox", name="Reply").fill("Yes, in two days. I'm Lena.")
    agent.get_by_role("button", name="Send").click()
    expect(visitor.locator(".m.agent", has_text="Yes, in two days. I'm Lena.")).to_be_visible()
    visitor.screenshot(path=str(artifacts / "admin-shop-chat.png"))
