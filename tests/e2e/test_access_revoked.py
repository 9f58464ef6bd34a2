"""An agent whose access is taken away while their console is open is taken to the login page at once, which
says why, instead of a console that silently stops updating (web/static/console.js, the stream's `revoked`)."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from tests.admin.conftest import logged_in
from tests.clients import log_in_page
from tests.conftest import Stack
from tests.factories import new_people


def test_a_deactivated_agents_open_console_goes_to_the_login_page(stack: Stack, browser: Browser) -> None:
    people = new_people()
    page = browser.new_context().new_page()
    log_in_page(page, stack.base_url, people["agent"])  # type: ignore[arg-type]
    expect(page.locator("#conversation-list")).to_be_visible()
    expect(page.locator(".console[data-live=open]")).to_be_attached()  # the live stream listens

    admin = logged_in(stack.base_url, people["admin"])  # type: ignore[arg-type]
    assert admin.post(f"/admin/agents/{people['agent']['id']}/deactivate").status_code == 303  # type: ignore[index]

    expect(page).to_have_url(re.compile(re.escape(f"{stack.base_url}/login")), timeout=20000)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
