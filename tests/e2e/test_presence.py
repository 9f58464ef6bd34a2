"""Presence in the browser: agents see each other's status change live in the top bar's roster, and closing the
console turns an agent away after the grace period, without anyone reloading."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.clients import log_in_page
from tests.conftest import Stack
from tests.test_presence import GRACE, worker_with_grace

pytestmark = pytest.mark.browser


def console(browser: Browser, base_url: str, login: dict[str, str], errors: list[str] | None = None) -> Page:
    """An agent's console tab; `errors` collects the script errors and CSP refusals (of the heartbeat's worker,
    say) the browser reports."""
    page = browser.new_context().new_page()
    if errors is not None:
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
    log_in_page(page, base_url, login)
    expect(page.locator(".topbar .roster")).to_be_visible()
    return page


def roster_row(page: Page, name: str) -> Locator:
    return page.locator(".roster .roster-agent", has_text=name)


def test_an_agent_sees_a_colleague_step_away_in_the_roster(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("ann", "bob")
    errors: list[str] = []
    ann = console(browser, stack.base_url, tenant["agents"][0], errors)
    bob = console(browser, stack.base_url, tenant["agents"][1], errors)
    bob.locator(".roster summary").click()
    expect(bob.locator(".roster summary")).to_have_text("2 online")
    expect(roster_row(bob, "Ann")).to_have_attribute("data-presence", "online")

    ann.get_by_label("Your status").select_option("away")

    expect(roster_row(bob, "Ann")).to_have_attribute("data-presence", "away")
    expect(roster_row(bob, "Ann").locator(".dot")).to_have_class("dot dot-away")
    expect(roster_row(bob, "Ann")).to_be_visible()  # the open dropdown stayed open through the refresh
    expect(bob.locator(".roster summary")).to_have_text("1 online")
    expect(roster_row(ann, "Ann")).to_have_attribute("data-presence", "away")  # her own roster too
    assert errors == []


def test_closing_the_console_turns_the_agent_away_after_the_grace_period(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("ann", "bob")
    # Consoles that send a heartbeat every second, and a sweeper with a grace of GRACE seconds.
    with worker_with_grace(stack), stack.another_web(DESKBELL_PRESENCE_HEARTBEAT_SECONDS="1") as base_url:
        ann = console(browser, base_url, tenant["agents"][0])
        bob = console(browser, base_url, tenant["agents"][1])
        bob.wait_for_timeout((GRACE * 2 + 1) * 1000)  # open consoles keep their agents online past the grace
        expect(roster_row(bob, "Ann")).to_have_attribute("data-presence", "online")
        # The heartbeat's clock runs in a worker, which browsers do not slow down in a background tab.
        assert [w.url.rsplit("/", 1)[1] for w in bob.workers] == ["presence-worker.js"]

        ann.context.close()  # Ann closes her last tab

        expect(roster_row(bob, "Ann")).to_have_attribute("data-presence", "away", timeout=(GRACE + 6) * 1000)
        expect(roster_row(bob, "Bob")).to_have_attribute("data-presence", "online")
        expect(bob.get_by_label("Your status")).to_have_value("online")
