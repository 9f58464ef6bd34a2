"""Keyboard shortcuts in headless Chromium: next/previous conversation, the composer, help, assign and resolve."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import open_console, start_conversation
from tests.conftest import Stack

pytestmark = pytest.mark.browser


def chats(stack: Stack, site_key: str, *bodies: str) -> list[str]:
    """New visitors' first messages, oldest first (start_conversation runs its own loop: not on Playwright's)."""
    with ThreadPoolExecutor(1) as pool:
        return [pool.submit(start_conversation, stack.base_url, site_key, body).result() for body in bodies]


@pytest.fixture
def console(stack: Stack, browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """An agent's console with three unassigned chats (nobody was online when they came): gamma is newest.

    Logging in puts the agent online, so routing gives them the waiting chats; the agent sets themselves away,
    and routing takes the unanswered chats back to the queue (docs/architecture.md, "Routing and the queue")."""
    tenant = stack.bootstrap("ola")
    conversations = chats(stack, str(tenant["site_key"]), "alpha", "beta", "gamma")
    context = browser.new_context()
    page = context.new_page()
    open_console(page, stack.base_url, tenant["agents"][0])
    page.get_by_label("Your status").select_option("away")
    expect(page.locator('.views [data-view="unassigned"] .count')).to_have_text("3", timeout=20000)
    expect(page.locator("#conversation-list .row .preview")).to_have_text(["gamma", "beta", "alpha"])
    yield page, conversations
    context.close()


def active_thread(page: Page) -> object:
    return expect(page.locator(".pane.active .thread"))


def test_j_and_k_or_alt_arrows_open_the_next_and_previous_conversation(console: tuple[Page, list[str]]) -> None:
    page, (alpha, beta, gamma) = console

    page.keyboard.press("j")
    active_thread(page).to_contain_text("gamma")
    expect(page.locator("#conversation-list .row.current .preview")).to_have_text("gamma")
    page.keyboard.press("j")
    active_thread(page).to_contain_text("beta")
    page.keyboard.press("j")
    active_thread(page).to_contain_text("alpha")
    page.keyboard.press("j")  # the end of the list: stays
    active_thread(page).to_contain_text("alpha")
    page.keyboard.press("k")
    active_thread(page).to_contain_text("beta")
    page.keyboard.press("Alt+ArrowUp")
    active_thread(page).to_contain_text("gamma")
    page.keyboard.press("Alt+ArrowDown")
    active_thread(page).to_contain_text("beta")
    expect(page).to_have_url(f"{page.url.split('/console')[0]}/console/c/{beta}")
    expect(page.locator(".tabstrip .tab")).to_have_count(3)


def test_c_focuses_the_composer_where_letters_are_text_and_escape_leaves_it(console: tuple[Page, list[str]]) -> None:
    page, _ = console
    page.keyboard.press("j")
    active_thread(page).to_contain_text("gamma")

    page.keyboard.press("c")
    composer = page.locator(".pane.active .composer textarea[name=body]")
    expect(composer).to_be_focused()
    page.keyboard.type("jk?")  # typed, not shortcuts
    expect(composer).to_have_value("jk?")
    active_thread(page).to_contain_text("gamma")
    expect(page.locator("#shortcuts")).to_be_hidden()

    page.keyboard.press("Escape")
    expect(composer).not_to_be_focused()
    page.keyboard.press("j")
    active_thread(page).to_contain_text("beta")


def test_question_mark_shows_the_shortcuts_and_escape_closes_them(console: tuple[Page, list[str]]) -> None:
    page, _ = console
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")

    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Next conversation")
    expect(help_dialog).to_contain_text("Resolve the conversation")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()

    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(help_dialog).to_be_visible()
    help_dialog.get_by_role("button", name="Close").click()
    expect(help_dialog).to_be_hidden()

    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()


def test_a_assigns_the_active_conversation_to_me_and_e_resolves_it(console: tuple[Page, list[str]]) -> None:
    """Clicks the active pane's [data-action=assign-me] and [data-action=resolve] (web/agent/actions.py)."""
    page, (_alpha, beta, _gamma) = console
    page.locator("#conversation-list a", has_text="beta").click()
    active_thread(page).to_contain_text("beta")
    assignee = page.locator(".pane.active .actions .assignee")
    expect(assignee).to_have_text("Unassigned")

    page.keyboard.press("a")
    expect(assignee).to_contain_text("Assigned to you")
    expect(page.locator('.views [data-view="mine"] .count')).to_have_text("1")

    page.keyboard.press("e")
    expect(page.locator(".pane.active .actions [data-status]")).to_have_attribute("data-status", "resolved")
    expect(page.locator("#conversation-list .row .preview")).to_have_text(["gamma", "alpha"])  # open ones
    expect(page.locator(".pane.active")).to_have_attribute("data-conversation", beta)  # still open to read
