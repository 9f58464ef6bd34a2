"""Proactive invitations (issue 8; docs/widget.md, "Invitations") in headless Chromium, against the running stack: an
admin adds "on /pricing after 2 s: Need help choosing a plan?" in the site admin; the widget on a shop's /pricing
shows it as a bubble beside the launcher after about 2 s, not on /about, once per day after a dismissal; a click
opens the chat with the invitation as its first line, and the visitor's answer reaches the agent with the
invitation recorded. Host pages are served as in test_widget.py, from another origin than the stack's."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.clients import log_in_page, logged_in_agent
from tests.conftest import Stack
from tests.e2e.test_widget import conversation_of, host_page, new_context, serve

pytestmark = pytest.mark.browser

INVITATION = "Need help choosing a plan?"
# Longer than the rule's 2 s plus a loaded machine's start-up of the widget: a bubble due would have shown by then.
QUIET = 4000


def shop(stack: Stack, path: str) -> str:
    return "http://localhost:" + stack.base_url.rsplit(":", 1)[1] + path


def add_pricing_invitation_in_the_admin(
    stack: Stack, browser: Browser, tenant: dict[str, object], chinese: str = ""
) -> None:
    context = browser.new_context()
    admin = context.new_page()
    log_in_page(admin, stack.base_url, {"email": str(tenant["owner_email"]), "password": str(tenant["owner_password"])})
    admin.wait_for_url(f"{stack.base_url}/console")
    admin.goto(f"{stack.base_url}/admin/sites")
    admin.get_by_role("link", name="Demo site").click()
    expect(admin.get_by_role("heading", name="Invitations")).to_be_visible()
    expect(admin.get_by_text("No invitations yet.")).to_be_visible()
    admin.get_by_label("Page condition").select_option(label="path starts with")
    admin.get_by_label("Page path").fill("/pricing")
    admin.get_by_label("Seconds on the page").fill("2")
    admin.get_by_label("Invitation message (en)").fill(INVITATION)
    admin.get_by_label("Invitation message (zh)").fill(chinese)
    admin.get_by_role("button", name="Add invitation").click()
    expect(admin.get_by_role("status")).to_contain_text("Invitation added.")
    row = admin.locator("#invitations tbody tr", has_text="/pricing")
    expect(row).to_contain_text("2 s")
    expect(row).to_contain_text(INVITATION)
    expect(row.get_by_role("button", name="Turn off the invitation on /pricing")).to_be_visible()
    context.close()


def shop_visitor(stack: Stack, browser: Browser, site_key: str) -> Page:
    context = new_context(browser, viewport={"width": 1280, "height": 800})
    for path in ("/pricing", "/about"):
        serve(context, shop(stack, path), host_page(stack, site_key))
    return context.new_page()


def bubble(page: Page) -> Locator:
    return page.locator("deskbell-widget .invite")


def wait_for_the_widget(page: Page) -> None:
    page.evaluate("() => new Promise(done => window.Deskbell.on('ready', done))")


def test_the_invitation_shows_on_pricing_after_its_seconds_not_on_about_and_not_again_once_dismissed(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    tenant = stack.bootstrap()
    add_pricing_invitation_in_the_admin(stack, browser, tenant)
    page = shop_visitor(stack, browser, str(tenant["site_key"]))

    page.goto(shop(stack, "/about"))
    wait_for_the_widget(page)
    page.wait_for_timeout(QUIET)
    expect(bubble(page)).to_be_hidden()

    # A single-page app moves to /pricing without loading a page: the rule's 2 s count from there.
    moved = time.monotonic()  # before, so the time measured is at most the time the visitor spent there
    page.evaluate("history.pushState({}, '', '/pricing')")
    invitation = page.get_by_role("button", name=INVITATION)
    expect(invitation).to_be_visible(timeout=15000)
    assert time.monotonic() - moved >= 1.9, "shown before the visitor spent 2 s on /pricing"
    expect(bubble(page)).to_have_attribute("role", "status")
    page.screenshot(path=str(artifacts / "widget-invitation.png"))

    page.get_by_role("button", name="Dismiss invitation").click()
    expect(bubble(page)).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()

    page.reload()  # /pricing again, within the day: the cap says no
    wait_for_the_widget(page)
    page.wait_for_timeout(QUIET)
    expect(bubble(page)).to_be_hidden()
    page.context.close()


def test_a_click_on_the_invitation_opens_the_chat_with_it_and_the_answer_reaches_the_agent_with_it(
    stack: Stack, browser: Browser
) -> None:
    tenant = stack.bootstrap("mia")
    add_pricing_invitation_in_the_admin(stack, browser, tenant)
    agent = logged_in_agent(stack.base_url, tenant)
    page = shop_visitor(stack, browser, str(tenant["site_key"]))

    loaded = time.monotonic()
    page.goto(shop(stack, "/pricing"))
    invitation = page.get_by_role("button", name=INVITATION)
    expect(invitation).to_be_visible(timeout=15000)
    assert time.monotonic() - loaded >= 1.9
    invitation.click()

    expect(page.get_by_role("dialog")).to_be_visible()
    expect(bubble(page)).to_be_hidden()
    expect(page.locator(".list .m").first).to_have_text(INVITATION)
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    box.fill("Which plan has SSO?")
    box.press("Enter")
    expect(page.locator(".m.visitor", has_text="Which plan has SSO?")).to_have_attribute("data-state", "sent")

    conversation_id = conversation_of(agent)
    assert agent.thread(conversation_id) == ["Which plan has SSO?"]
    # The attribute goes with its own session request, beside the message: wait for the visitor panel to show it.
    deadline = time.monotonic() + 15
    while INVITATION not in (panel := html.unescape(agent.conversation_page(conversation_id))):
        assert time.monotonic() < deadline, "the invitation never reached the visitor panel"
        time.sleep(0.2)
    assert f"<dt>invitation</dt><dd>{INVITATION}</dd>" in panel

    page.reload()  # the thread keeps the invitation as its first line
    page.get_by_role("button", name="Open chat").click()
    expect(page.locator(".list .m").first).to_have_text(INVITATION)
    expect(bubble(page)).to_be_hidden()
    page.context.close()


def test_on_a_phone_the_bubble_fits_the_screen_keeps_still_for_reduced_motion_and_goes_when_the_chat_opens(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    tenant = stack.bootstrap()
    add_pricing_invitation_in_the_admin(stack, browser, tenant)
    context = new_context(browser, viewport={"width": 390, "height": 844}, is_mobile=True, reduced_motion="reduce")
    serve(context, shop(stack, "/pricing"), host_page(stack, str(tenant["site_key"])))
    page = context.new_page()

    page.goto(shop(stack, "/pricing"))
    invitation = page.get_by_role("button", name=INVITATION)
    expect(invitation).to_be_visible(timeout=15000)
    box = bubble(page).bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert bubble(page).evaluate("e => getComputedStyle(e).animationName") == "none"
    page.screenshot(path=str(artifacts / "widget-invitation-phone.png"))

    page.get_by_role("button", name="Open chat").click()  # the launcher, not the bubble: it goes all the same
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(bubble(page)).to_be_hidden()
    expect(page.locator(".list .m").first).to_have_text("Hi! How can we help?")  # not taken: the usual welcome
    context.close()


def test_no_invitation_over_an_open_chat_nor_to_a_visitor_who_is_already_chatting(
    stack: Stack, browser: Browser
) -> None:
    tenant = stack.bootstrap()
    add_pricing_invitation_in_the_admin(stack, browser, tenant)
    page = shop_visitor(stack, browser, str(tenant["site_key"]))

    page.goto(shop(stack, "/pricing"))
    page.get_by_role("button", name="Open chat").click()  # before the rule's 2 s are up
    wait_for_the_widget(page)
    page.wait_for_timeout(QUIET)
    expect(bubble(page)).to_be_hidden()

    box = page.get_by_role("textbox", name="Message")
    box.fill("Do you have a student discount?")
    box.press("Enter")
    expect(page.locator(".m.visitor", has_text="student discount")).to_have_attribute("data-state", "sent")
    page.reload()  # the chat closed, on /pricing again: the visitor has a conversation, so no invitation
    wait_for_the_widget(page)
    page.wait_for_timeout(QUIET)
    expect(bubble(page)).to_be_hidden()
    page.context.close()


def test_a_chinese_browser_gets_the_chinese_text_of_the_invitation(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap()
    add_pricing_invitation_in_the_admin(stack, browser, tenant, chinese="需要帮您选择套餐吗？")
    context = new_context(browser, locale="zh-CN")
    serve(context, shop(stack, "/pricing"), host_page(stack, str(tenant["site_key"])))
    page = context.new_page()

    page.goto(shop(stack, "/pricing"))

    expect(page.get_by_role("button", name="需要帮您选择套餐吗？")).to_be_visible(timeout=15000)
    expect(page.get_by_role("button", name="关闭邀请")).to_be_visible()
    context.close()
