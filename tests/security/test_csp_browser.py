"""Issue 7, headers: the console works in real headless Chromium under its strict Content-Security-Policy, with
no violation reported while an agent logs in, opens a conversation and replies."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import start_conversation
from tests.conftest import Stack
from tests.e2e.conftest import browser  # noqa: F401 - the fixture

pytestmark = pytest.mark.browser

# The page reports each violation to us as well as to the console, in case the console message is worded otherwise.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.violatedDirective));
"""


def watch(page: Page) -> list[str]:
    """Every Content Security Policy complaint the page makes, from the console and from the DOM event."""
    found: list[str] = []
    page.on("console", lambda m: found.append(m.text) if "Content Security Policy" in m.text else None)
    page.add_init_script(RECORD_VIOLATIONS)
    return found


def violations(page: Page, console: list[str]) -> list[str]:
    return console + page.evaluate("window.__violations")


def test_the_console_runs_under_its_csp_without_a_violation(stack: Stack, browser: Browser) -> None:  # noqa: F811
    tenant = stack.bootstrap("dora")
    login = tenant["agents"][0]
    # start_conversation runs its own event loop: not on this thread, where Playwright's loop runs.
    with ThreadPoolExecutor(1) as pool:
        conversation = pool.submit(start_conversation, stack.base_url, tenant["site_key"], "Is the CSP on?").result()

    page = browser.new_context().new_page()
    console = watch(page)
    response = page.goto(f"{stack.base_url}/login")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_label("Email").fill(login["email"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Log in").click()
    row = page.locator("#conversation-list a", has_text="Is the CSP on?")
    expect(row).to_be_visible()
    row.click()
    expect(page).to_have_url(f"{stack.base_url}/console/c/{conversation}")
    expect(page.locator(".pane.active .thread .msg-visitor", has_text="Is the CSP on?")).to_be_visible()
    page.get_by_role("textbox", name="Reply").fill("Yes, and nothing broke.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".pane.active .thread .msg-agent", has_text="nothing broke")).to_be_visible()
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")
    page.wait_for_timeout(300)  # let late requests (the event stream, indicators) report
    assert violations(page, console) == []

    # The alarm works: an inline script is refused, and both witnesses say so.
    inline = "() => { const s = document.createElement('script'); s.text = 'window.ran = 1'; document.head.append(s); }"
    page.evaluate(inline)
    page.wait_for_timeout(200)
    assert page.evaluate("window.ran") is None
    assert any("Content Security Policy" in text for text in console)
    assert "script-src-elem" in page.evaluate("window.__violations")
