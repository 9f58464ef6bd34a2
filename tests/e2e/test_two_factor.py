"""Two-factor login in a real browser (issue 7): an agent turns it on from the account page (QR code, a code from
the app, recovery codes shown once) and from then on logs in with a code after the password; a tenant that
requires it has everyone without it set it up at their next login, before they are logged in. The authenticator
app is pyotp, with the key the page shows beside the QR code."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import log_in_page
from tests.conftest import Stack
from tests.factories import new_people

pytestmark = pytest.mark.browser


def code(secret: str, steps_ahead: int = 0) -> str:
    """The app's code; one step ahead (still accepted: clocks drift) when this step's code was just used."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def enrol(page: Page) -> tuple[str, list[str]]:
    """On the two-factor page: scan (read the key), type the code; returns the key and the recovery codes."""
    expect(page.get_by_role("img", name="QR code").locator("svg")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_label("Code from the app").fill(code(secret))
    page.get_by_role("button", name="Turn on two-factor").click()
    expect(page.get_by_role("status")).to_have_text("Two-factor is on.")
    recovery = page.get_by_role("region", name="Recovery codes").locator("code").all_inner_texts()
    return secret, recovery


def csp_violations(page: Page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda m: found.append(m.text) if "Content Security Policy" in m.text else None)
    return found


def test_an_agent_turns_on_two_factor_and_then_logs_in_with_a_code(stack: Stack, browser: Browser) -> None:
    agent: dict[str, Any] = new_people()["agent"]  # type: ignore[assignment]
    page = browser.new_context().new_page()
    violations = csp_violations(page)
    log_in_page(page, stack.base_url, agent)
    page.wait_for_url(f"{stack.base_url}/console")

    page.goto(f"{stack.base_url}/account/two-factor")
    secret, recovery = enrol(page)
    assert len(recovery) == 10 and len(set(recovery)) == 10

    later = browser.new_context().new_page()
    log_in_page(later, stack.base_url, agent)
    expect(later.get_by_role("heading", name="Two-factor code")).to_be_visible()
    later.goto(f"{stack.base_url}/console")  # the password alone logs no one in
    expect(later).to_have_url(f"{stack.base_url}/login?next=%2Fconsole")

    log_in_page(later, stack.base_url, agent)
    later.get_by_label("Code from your authenticator app").fill("000000" if code(secret, 1) != "000000" else "111111")
    later.get_by_role("button", name="Log in").click()
    expect(later.get_by_role("alert")).to_have_text("That code is not right. Try the newest one from your app.")
    later.get_by_label("Code from your authenticator app").fill(code(secret, 1))
    later.get_by_role("button", name="Log in").click()
    later.wait_for_url(f"{stack.base_url}/console")

    # Lost phone: a recovery code works once.
    third = browser.new_context().new_page()
    log_in_page(third, stack.base_url, agent)
    third.get_by_label("Code from your authenticator app").fill(recovery[0])
    third.get_by_role("button", name="Log in").click()
    third.wait_for_url(f"{stack.base_url}/console")
    fourth = browser.new_context().new_page()
    log_in_page(fourth, stack.base_url, agent)
    fourth.get_by_label("Code from your authenticator app").fill(recovery[0])
    fourth.get_by_role("button", name="Log in").click()
    expect(fourth.get_by_role("alert")).to_contain_text("That code is not right.")
    assert violations == []


def test_a_tenant_that_requires_two_factor_has_an_agent_set_it_up_at_the_next_login(
    stack: Stack, browser: Browser
) -> None:
    people = new_people()
    admin_page = browser.new_context().new_page()
    log_in_page(admin_page, stack.base_url, people["admin"])  # type: ignore[arg-type]
    admin_page.wait_for_url(f"{stack.base_url}/console")
    admin_page.goto(f"{stack.base_url}/admin/settings")
    admin_page.get_by_label("Require two-factor login").check()
    admin_page.get_by_role("button", name="Save two-factor").click()
    expect(admin_page.get_by_text("Settings saved.")).to_be_visible()
    expect(admin_page.get_by_label("Require two-factor login")).to_be_checked()

    page = browser.new_context().new_page()
    log_in_page(page, stack.base_url, people["agent"])  # type: ignore[arg-type]
    expect(page.get_by_text("Your organisation requires two-factor login. Set it up to go on.")).to_be_visible()
    secret, _ = enrol(page)
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{stack.base_url}/console")

    # It cannot be turned off while the tenant requires it; the next login asks for a code.
    page.goto(f"{stack.base_url}/account/two-factor")
    expect(page.get_by_text("Your organisation requires two-factor: it stays on.")).to_be_visible()
    expect(page.get_by_role("button", name="Turn off two-factor")).to_have_count(0)
    again = browser.new_context().new_page()
    log_in_page(again, stack.base_url, people["agent"])  # type: ignore[arg-type]
    again.get_by_label("Code from your authenticator app").fill(code(secret, 1))
    again.get_by_role("button", name="Log in").click()
    again.wait_for_url(f"{stack.base_url}/console")
