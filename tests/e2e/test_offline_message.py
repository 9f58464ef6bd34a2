"""Outside business hours (issue 8), in headless Chromium: the widget says when the team is back and offers a
message form; the message lands in the inbox; the agent's reply is delivered by SMTP (a real aiosmtpd server in
this process); the visitor's email reply comes back into the thread; the visitor emails themselves the
conversation from the widget's menu."""

from __future__ import annotations

import re
import smtplib
import time
from email.message import EmailMessage
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from desk.db import tenant_session
from desk.models import Conversation
from tests.clients import logged_in_agent
from tests.conftest import Stack
from tests.e2e.test_widget import host_page, new_context, serve, shop_url
from tests.factories import tenant_id_of
from tests.smtp_server import SmtpServer
from tests.test_mail import closed_now, inbound, smtp, use_mail_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def inbox_conversation(tenant_id: Any) -> Conversation:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with tenant_session(tenant_id) as session:
            found = session.scalar(select(Conversation))
            if found is not None:
                session.expunge(found)
                return found
        time.sleep(0.1)
    raise AssertionError("no conversation in the inbox")


def test_outside_business_hours_a_visitor_leaves_a_message_and_the_conversation_goes_on_by_email(
    stack: Stack, browser: Browser, smtp: SmtpServer, inbound: int  # noqa: F811 - the fixtures above
) -> None:
    tenant = stack.bootstrap("kim")
    tenant_id = tenant_id_of(tenant)
    closed_now(tenant_id)
    use_mail_server(tenant_id, smtp)
    context = new_context(browser)
    page = context.new_page()
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"])))
    page.goto(shop_url(stack))
    page.get_by_role("button", name="Open chat").click()

    notice = page.locator(".hours")
    expect(notice).to_have_text(re.compile(r"^We're back .+ at 9:00 \(Europe/Paris\)\.$"))
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_hidden()
    form = page.get_by_role("form", name="Leave us a message and we'll reply by email.")
    expect(form).to_be_visible()

    form.get_by_role("textbox", name="Your email").fill("grace@navy")
    form.get_by_role("textbox", name="Your message").fill("Do you ship to Brest?")
    form.get_by_role("button", name="Send message").click()
    expect(form.get_by_role("alert")).to_have_text("Enter a valid email address, like name@example.com.")
    form.get_by_role("textbox", name="Your email").fill("grace@navy.test")
    form.get_by_role("button", name="Send message").click()
    expect(form.get_by_text("Thanks! We'll reply to grace@navy.test.")).to_be_visible()

    # The message is a conversation in the inbox, with the visitor's email.
    conversation = inbox_conversation(tenant_id)
    agent = logged_in_agent(stack.base_url, tenant)
    assert agent.thread(str(conversation.id)) == ["Do you ship to Brest?"]
    assert "grace@navy.test" in agent.conversation_page(str(conversation.id))

    # The agent's reply goes by email (and to the page, still open).
    agent.reply(str(conversation.id), "Yes, in two days.")
    email = smtp.wait_for("grace@navy.test", "Re: your message")
    assert "Yes, in two days." in email.text
    expect(page.locator(".m.agent", has_text="Yes, in two days.")).to_be_visible()

    # The visitor answers from their mailbox: the reply is in the thread, quoted text cut off.
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = "grace@navy.test", str(email.message["Reply-To"]), "Re: hi"
    reply["Message-ID"] = "<answer-1@navy.test>"
    reply.set_content("Great, ordering now.\n\nOn Friday, Shop wrote:\n> Yes, in two days.\n")
    with smtplib.SMTP("127.0.0.1", inbound, timeout=10) as client:
        client.send_message(reply)
    deadline = time.monotonic() + 30
    while agent.thread(str(conversation.id))[-1:] != ["Great, ordering now."] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert agent.thread(str(conversation.id)) == ["Do you ship to Brest?", "Yes, in two days.", "Great, ordering now."]

    # "Email me this conversation", from the widget's header.
    page.get_by_role("button", name="Email me this conversation").click()
    transcript = page.get_by_role("form", name="Email me this conversation")
    expect(transcript.get_by_role("textbox", name="Your email")).to_have_value("grace@navy.test")
    transcript.get_by_role("button", name="Send").click()
    expect(transcript.get_by_text("We've sent this conversation to grace@navy.test.")).to_be_visible()
    sent = smtp.wait_for("grace@navy.test", "Your conversation with")
    assert "Do you ship to Brest?" in sent.text and "Great, ordering now." in sent.text
    context.close()
