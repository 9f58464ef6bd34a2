"""The pre-chat form in headless Chromium, against the running stack (docs/widget.md, "Pre-chat form"): an admin
turns it on, a visitor on a shop's page (served as in test_widget.py, from another origin) must answer it before
the composer shows, and the agent sees the answers in the console."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from desk import widget_settings
from desk.db import system_session
from desk.models import Site
from tests.clients import log_in_page, open_console
from tests.conftest import Stack
from tests.e2e.test_widget import host_page, new_context, serve, shop_url
from tests.test_widget_hours import tenant_whose_support_team_is_closed

pytestmark = pytest.mark.browser


def site_id_of(site_key: str) -> str:
    with system_session() as session:
        return str(session.scalar(select(Site.id).where(Site.site_key == site_key)))


def test_a_visitor_answers_the_pre_chat_form_and_the_agent_sees_the_answers(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    tenant = stack.bootstrap("zoe")
    site_key = str(tenant["site_key"])

    # The admin asks for an email (required), a name (optional) and Sales or Support.
    admin = browser.new_context().new_page()
    log_in_page(admin, stack.base_url, {"email": str(tenant["owner_email"]), "password": str(tenant["owner_password"])})
    admin.wait_for_url(f"{stack.base_url}/console")
    admin.goto(f"{stack.base_url}/admin/sites/{site_id_of(site_key)}")
    admin.get_by_label("Show the pre-chat form").check()
    admin.get_by_label("Ask for the visitor's name").select_option("optional")
    admin.get_by_label("Ask for the visitor's email").select_option("required")
    admin.get_by_label("Options").fill("Sales\nSupport")
    admin.get_by_role("button", name="Save pre-chat form").click()
    expect(admin.get_by_role("status")).to_contain_text("Pre-chat form saved.")
    admin.context.close()

    shop = new_context(browser, viewport={"width": 1280, "height": 800}, locale="en-GB")
    visitor = shop.new_page()
    serve(shop, shop_url(stack), host_page(stack, site_key))
    visitor.goto(shop_url(stack))
    visitor.get_by_role("button", name="Open chat").click()
    form = visitor.get_by_role("form", name="Before we start, tell us a little about you.")
    expect(form).to_be_visible()
    expect(visitor.get_by_role("textbox", name="Message")).to_be_hidden()  # no composer before the answers
    name = form.get_by_role("textbox", name="Your name (optional)")
    email = form.get_by_role("textbox", name="Your email")
    expect(name).to_be_focused()
    visitor.screenshot(path=str(artifacts / "widget-prechat.png"))

    # From the keyboard, without the email: refused, and the email field says so.
    visitor.keyboard.type("Ada Lovelace")
    visitor.keyboard.press("Tab")  # the email, left empty
    visitor.keyboard.press("Tab")  # the question's first option
    expect(form.get_by_role("radiogroup", name="What can we help with?")).to_be_visible()
    visitor.keyboard.press("Space")
    expect(form.get_by_role("radio", name="Sales")).to_be_checked()
    visitor.keyboard.press("Tab")
    visitor.keyboard.press("Enter")  # Start chat
    expect(form.get_by_role("alert")).to_have_text("Enter your email address.")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description("Enter your email address.")
    expect(email).to_be_focused()

    visitor.keyboard.type("ada@example.com")
    visitor.keyboard.press("Enter")
    box = visitor.get_by_role("textbox", name="Message")
    expect(box).to_be_visible()
    expect(box).to_be_focused()
    expect(form).to_be_hidden()
    box.fill("A quote for 40 seats, please")
    box.press("Enter")
    expect(visitor.locator(".m.visitor", has_text="A quote for 40 seats")).to_have_attribute("data-state", "sent")
    visitor.reload()  # answered: the composer from now on
    visitor.get_by_role("button", name="Open chat").click()
    expect(visitor.get_by_role("textbox", name="Message")).to_be_visible()
    expect(form).to_be_hidden()

    agent = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    open_console(agent, stack.base_url, tenant["agents"][0])
    agent.locator("#conversation-list a", has_text="A quote for 40 seats").click()
    pane = agent.locator(".pane.active")
    expect(pane.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    panel = pane.locator(".visitor-panel")
    expect(panel.locator(".visitor-name")).to_contain_text("Ada Lovelace")
    expect(panel.locator(".visitor-email")).to_contain_text("ada@example.com")
    attributes = panel.locator(".attributes")
    expect(attributes).to_contain_text("pre_chat_choice")
    expect(attributes).to_contain_text("Sales")
    agent.screenshot(path=str(artifacts / "console-prechat-visitor.png"))
    shop.close()
    agent.context.close()


def test_the_form_speaks_chinese_and_shows_the_sites_question_as_text(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap()
    form = {
        "prechat_enabled": "on",
        "prechat_question_zh": "<b>您想咨询什么？</b>",
        "prechat_options": "销售\n<i>支持</i>",
    }
    with system_session() as session:
        site = session.scalars(select(Site).where(Site.site_key == tenant["site_key"])).one()
        site.widget = {**(site.widget or {}), "prechat": widget_settings.parse_prechat(form)}
        session.commit()
    shop = new_context(browser, locale="zh-CN")
    visitor = shop.new_page()
    serve(shop, shop_url(stack), host_page(stack, str(tenant["site_key"])))
    visitor.goto(shop_url(stack))
    visitor.get_by_role("button", name="打开聊天").click()

    question = visitor.get_by_role("radiogroup", name="<b>您想咨询什么？</b>")
    expect(question).to_be_visible()
    expect(question.get_by_role("radio", name="<i>支持</i>")).to_be_visible()
    assert question.locator("b, i").count() == 0  # the site's text, shown as text
    visitor.get_by_role("button", name="开始聊天").click()
    expect(visitor.get_by_role("alert")).to_have_text("请选择一项。")
    question.get_by_role("radio", name="销售").check()
    visitor.get_by_role("button", name="开始聊天").click()
    expect(visitor.get_by_role("textbox", name="消息")).to_be_visible()
    shop.close()


def test_a_choice_that_leads_to_a_closed_team_offers_the_message_form(stack: Stack, browser: Browser) -> None:
    site_key = tenant_whose_support_team_is_closed(stack)
    shop = new_context(browser, locale="en-GB")
    visitor = shop.new_page()
    serve(shop, shop_url(stack), host_page(stack, site_key))
    visitor.goto(shop_url(stack))
    visitor.get_by_role("button", name="Open chat").click()

    visitor.get_by_role("radio", name="Support").check()
    visitor.get_by_role("button", name="Start chat").click()

    leave = visitor.get_by_role("form", name="Leave us a message and we'll reply by email.")
    expect(leave).to_be_visible()
    expect(leave.get_by_role("textbox", name="Your email")).to_be_focused()
    expect(visitor.get_by_role("textbox", name="Message", exact=True)).to_be_hidden()
    shop.close()
