"""Issue 5's team scenario in headless Chromium: two agents and five visitors, each in a browser of their own.

New chats appear live in Unassigned; Ann takes two and answers both from their tabs; Bob sees the assignment
change live without reloading; each visitor gets only their own answer.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import open_console
from tests.conftest import Stack
from tests.e2e.test_widget import host_page, new_context, serve, shop_url

pytestmark = pytest.mark.browser

VISITORS = 5


def visitor_says(browser: Browser, stack: Stack, site_key: str, body: str) -> Page:
    """A visitor on the company's page opens the widget and sends `body`; returns their page."""
    context = new_context(browser)
    serve(context, shop_url(stack), host_page(stack, site_key))
    page = context.new_page()
    page.goto(shop_url(stack))
    page.get_by_role("button", name="Open chat").click()
    box = page.get_by_role("textbox", name="Message")
    box.fill(body)
    box.press("Enter")
    expect(page.locator(".m.visitor", has_text=body)).to_have_attribute("data-state", "sent")
    return page


def agent_console(browser: Browser, stack: Stack, login: dict[str, str]) -> Page:
    """An agent's console on the Unassigned list, away (so routing leaves new chats for the team to take)."""
    page = browser.new_context().new_page()
    open_console(page, stack.base_url, login)  # its scripts have run: the status select posts when changed
    # Saved before the page is left: a navigation would cancel the request on its way.
    with page.expect_response(lambda r: r.url.endswith("/console/presence") and r.request.method == "POST"):
        page.get_by_label("Your status").select_option("away")
    page.goto(f"{stack.base_url}/console?view=unassigned")
    return page


def row(page: Page, body: str):  # type: ignore[no-untyped-def]
    return page.locator("#conversation-list .row", has_text=body)


def test_two_agents_share_five_new_chats_live(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("ann", "bob")
    ann_login, bob_login = tenant["agents"]
    ann = agent_console(browser, stack, ann_login)
    bob = agent_console(browser, stack, bob_login)

    questions = [f"Question {i}: where is order {1000 + i}?" for i in range(VISITORS)]
    visitors = [visitor_says(browser, stack, str(tenant["site_key"]), q) for q in questions]

    # Both consoles list the five new chats as they arrive, without a reload.
    for page in (ann, bob):
        for question in questions:
            expect(row(page, question)).to_be_visible(timeout=20000)
        expect(page.locator("#conversation-list .view[data-view=unassigned] .count")).to_have_text("5")

    # Ann takes the first two and answers each from its own tab.
    taken = []
    for i in (0, 1):
        row(ann, questions[i]).locator("a").click()
        pane = ann.locator(".pane.active")
        expect(pane.locator(".thread .msg-visitor", has_text=questions[i])).to_be_visible()
        pane.locator("[data-action=assign-me]").click()
        expect(pane.locator(".actions .assignee")).to_contain_text("Assigned to you")
        taken.append(pane.get_attribute("data-conversation"))
    tabs = ann.locator(".pane")
    expect(tabs).to_have_count(2)
    for i, pane in enumerate(tabs.all()):
        ann.locator(f".tabstrip .tab[data-conversation='{pane.get_attribute('data-conversation')}'] .tab-open").click()
        box = ann.locator(".pane.active .composer textarea")
        box.fill(f"Order {1000 + i} ships tomorrow.")
        box.press("Control+Enter")
        expect(ann.locator(".pane.active .thread .msg-agent", has_text=f"Order {1000 + i} ships")).to_be_visible()

    # Bob's Unassigned list loses the two Ann took, live; All shows them as Ann's.
    for conversation in taken:
        expect(bob.locator(f"#conv-{conversation}")).to_have_count(0, timeout=20000)
    for i in (2, 3, 4):
        expect(row(bob, questions[i])).to_be_visible()
    expect(bob.locator("#conversation-list .view[data-view=unassigned] .count")).to_have_text("3")
    bob.locator("#conversation-list .view[data-view=all]").click()  # while live refreshes are still coming
    expect(bob.locator("#conversation-list .view[data-view=all]")).to_have_attribute("aria-selected", "true")
    for conversation in taken:
        expect(bob.locator(f"#conv-{conversation} .assignee")).to_have_text("Ann")

    # Each of the two visitors got their own answer; the others got none.
    for i, page in enumerate(visitors):
        answers = page.locator(".m.agent")
        if i < 2:
            expect(answers).to_have_count(1, timeout=20000)
            expect(answers).to_contain_text(f"Order {1000 + i} ships tomorrow.")
        else:
            expect(answers).to_have_count(0)
