"""In a real headless Chromium: private notes stay with the agents, a transfer carries its note to the next agent,
resolve and reopen, and saved replies come in by typing `/shortcut`."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import BackgroundLoop, Visitor, log_in_page
from tests.conftest import Stack

pytestmark = pytest.mark.browser


def user_id(stack: Stack, email: str) -> str:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return str(conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()[0])


def assignee_of(stack: Stack, conversation: str, timeout: float = 30.0) -> str | None:
    """The conversation's assignee once routing has given it to someone (None if nobody within `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            row = conn.execute("SELECT assignee_id FROM conversations WHERE id = %s", (conversation,)).fetchone()
        if (row and row[0]) or time.monotonic() > deadline:
            return str(row[0]) if row and row[0] else None
        time.sleep(0.2)


def open_conversation(page: Page, stack: Stack, conversation: str) -> Any:
    """The conversation's pane, opened by its link (as search results and bookmarks do)."""
    page.goto(f"{stack.base_url}/console/c/{conversation}")
    pane = page.locator(f".pane[data-conversation='{conversation}']")
    expect(pane.locator(".actions")).to_be_visible()
    return pane


def watch_for_csp_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    return errors


class Chat:
    """A visitor on a real socket, on its own event loop (Playwright owns this thread's), keeping every frame."""

    def __init__(self, stack: Stack, site_key: str) -> None:
        self.loop = BackgroundLoop()
        self.visitor = Visitor(stack.base_url, site_key)

    def say(self, body: str) -> str:
        async def send() -> str:
            if self.visitor.ws is None:
                await self.visitor.connect()
            await self.visitor.send({"type": "message", "client_id": uuid.uuid4().hex, "body": body})
            return (await self.visitor.expect("ack"))["conversation_id"]

        return self.loop.run(send())

    def wait_for_agent_message(self, body: str) -> None:
        async def wait() -> None:
            while not any(f["sender"] == "agent" and f["body"] == body for f in self.visitor.received("message")):
                await self.visitor.expect("message", timeout=15)

        self.loop.run(wait())

    def frames_text(self) -> str:
        return json.dumps(self.visitor.frames, ensure_ascii=False)

    def close(self) -> None:
        self.loop.run(self.visitor.close())
        self.loop.close()


def test_a_private_note_shows_in_the_pane_and_never_reaches_the_visitor(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("nora")
    chat = Chat(stack, tenant["site_key"])
    secret = f"Reseller, discount code {secrets.token_hex(4)}"
    try:
        conversation = chat.say("Can I get a discount?")
        page = browser.new_context().new_page()
        csp_errors = watch_for_csp_errors(page)
        log_in_page(page, stack.base_url, tenant["agents"][0])
        pane = open_conversation(page, stack, conversation)
        composer = pane.locator(".composer")

        composer.locator("[data-mode-switch=note]").click()
        expect(composer).to_have_attribute("data-mode", "note")
        expect(composer.get_by_text("Private note · only agents see this")).to_be_visible()
        composer.locator("textarea").fill(secret)
        composer.locator("textarea").press("Control+Enter")

        note = pane.locator(".thread .event-note", has_text=secret)
        expect(note).to_be_visible()
        expect(note).to_contain_text("Private note · only agents see this")
        expect(pane.locator(".composer textarea")).to_have_value("")
        expect(pane.locator(".composer")).to_have_attribute("data-mode", "note")  # still writing notes

        # Back to replying: the reply reaches the visitor, and the note never did.
        pane.locator(".composer [data-mode-switch=reply]").click()
        pane.locator(".composer textarea").fill("Let me check with the team.")
        pane.locator(".composer textarea").press("Control+Enter")
        chat.wait_for_agent_message("Let me check with the team.")
        expect(pane.locator(".thread .msg-agent", has_text="Let me check with the team.")).to_be_visible()
        page.wait_for_timeout(500)
        assert secret not in chat.frames_text()
        assert "discount code" not in chat.frames_text()

        # A reload shows the note where it was, still as a note.
        pane = open_conversation(page, stack, conversation)
        expect(pane.locator(".thread .event-note", has_text=secret)).to_be_visible()
        expect(pane.locator(".thread .msg", has_text=secret)).to_have_count(0)
        assert csp_errors == []
    finally:
        chat.close()


def test_a_transfer_moves_the_conversation_with_its_note_then_resolve_and_reopen(
    stack: Stack, browser: Browser
) -> None:
    tenant = stack.bootstrap("otto", "pia")
    otto_login, pia_login = tenant["agents"]
    otto_id, pia_id = user_id(stack, otto_login["email"]), user_id(stack, pia_login["email"])
    chat = Chat(stack, tenant["site_key"])
    try:
        # Nobody is online: the chat waits in the queue. Otto logging in puts him online, and routing gives the
        # waiting chat to him, the only agent there (desk/actions/routing.py).
        conversation = chat.say("My invoice is wrong.")
        otto = browser.new_context().new_page()
        log_in_page(otto, stack.base_url, otto_login)
        assert assignee_of(stack, conversation) == otto_id
        pane = open_conversation(otto, stack, conversation)
        actions = pane.locator(".actions")

        expect(actions.locator(".assignee")).to_contain_text("Assigned to you")
        expect(actions.locator("[data-action=assign-me]")).to_have_count(0)
        expect(pane.locator(".thread .event-assigned")).to_contain_text("Routed to Otto")

        actions.locator("details.transfer summary").click()
        actions.get_by_label("Transfer to", exact=True).select_option(f"agent:{pia_id}")
        actions.get_by_label("Note for them", exact=True).fill("Invoice 1142 charged twice; refund one.")
        actions.locator("[data-action=transfer]").click()

        expect(actions.locator(".assignee")).to_contain_text("Assigned to Pia")
        transferred = pane.locator(".thread .event-transferred")
        expect(transferred).to_contain_text("Otto transferred this to Pia")
        expect(transferred).to_contain_text("Invoice 1142 charged twice; refund one.")

        # Pia finds it hers, with Otto's note.
        pia = browser.new_context().new_page()
        log_in_page(pia, stack.base_url, pia_login)
        pia_pane = open_conversation(pia, stack, conversation)
        pia_actions = pia_pane.locator(".actions")
        expect(pia_actions.locator(".assignee")).to_contain_text("Assigned to you")
        expect(pia_pane.locator(".thread .event-transferred .note-body")).to_have_text(
            "Invoice 1142 charged twice; refund one."
        )
        expect(pia_actions.locator("[data-action=assign-me]")).to_have_count(0)

        # Resolve, then reopen.
        pia_actions.locator("[data-action=resolve]").click()
        expect(pia_actions.locator("[data-status]")).to_have_attribute("data-status", "resolved")
        expect(pia_actions.locator("[data-action=resolve]")).to_have_count(0)
        expect(pia_pane.locator(".thread .event-resolved")).to_contain_text("Pia resolved this")
        pia_actions.locator("[data-action=reopen]").click()
        expect(pia_actions.locator("[data-status]")).to_have_attribute("data-status", "open")
        expect(pia_pane.locator(".thread .event-reopened")).to_contain_text("Pia reopened this")

        # Otto's open pane follows (the change is announced to every console of the tenant).
        expect(pane.locator(".thread .event-reopened")).to_be_visible(timeout=15000)
    finally:
        chat.close()


def test_a_saved_reply_comes_in_by_typing_its_shortcut(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("quin")
    chat = Chat(stack, tenant["site_key"])
    try:
        conversation = chat.say("Hello, anyone?")
        page = browser.new_context().new_page()
        csp_errors = watch_for_csp_errors(page)
        log_in_page(page, stack.base_url, tenant["agents"][0])

        # The agent saves a reply of their own on the saved replies page (linked from the composer).
        pane = open_conversation(page, stack, conversation)
        href = pane.locator(".composer a.canned-link").get_attribute("href")
        page.goto(stack.base_url + href)
        page.get_by_label("Shortcut").fill("thanks")
        page.get_by_label("Text").fill("Thanks for waiting! I am on it.")
        page.get_by_role("button", name="Add").click()
        expect(page.get_by_role("status")).to_have_text("Saved /thanks.")

        pane = open_conversation(page, stack, conversation)
        box = pane.locator(".composer textarea")
        box.click()
        box.press_sequentially("Hi! /tha", delay=40)
        option = pane.locator(".canned-menu [role=option]", has_text="/thanks")
        expect(option).to_be_visible()
        expect(option).to_have_attribute("aria-selected", "true")
        box.press("Enter")
        expect(box).to_have_value("Hi! Thanks for waiting! I am on it.")
        expect(pane.locator(".canned-menu")).to_have_count(0)

        # Esc closes the list and leaves the text as typed.
        box.press_sequentially(" /th", delay=40)
        expect(option).to_be_visible()
        box.press("Escape")
        expect(pane.locator(".canned-menu")).to_have_count(0)
        expect(box).to_have_value("Hi! Thanks for waiting! I am on it. /th")
        for _ in " /th":
            box.press("Backspace")

        # An emoji from the picker, at the cursor.
        pane.locator(".composer .emoji-picker summary").click()
        pane.locator(".composer [data-emoji='👍']").click()
        expect(box).to_have_value("Hi! Thanks for waiting! I am on it.👍")

        box.press("Control+Enter")
        chat.wait_for_agent_message("Hi! Thanks for waiting! I am on it.👍")
        assert csp_errors == []
    finally:
        chat.close()
