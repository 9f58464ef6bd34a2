"""Business hours, offline messages and email (issue 8), and the mail server's circuit breaker (issue 9).

The running stack's worker runs the mailer; a real SMTP server (aiosmtpd, tests/smtp_server.py) in this process
stands in for the tenant's mail server, and `python -m workers.inbound_mail` receives the visitors' replies.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from desk import audit, mail, mail_hours, mail_outbox, mail_settings, metrics
from desk.actions.hours import do_save_schedule
from desk.db import system_session, tenant_session
from desk.embedded import free_port, wait_for_port
from desk.models import Conversation, MailDelivery, MailSettings, MailThread, Message, Schedule, Tenant, User
from desk.settings import Mail
from desk.settings import load as load_settings
from tests import clients
from tests.clients import Agent, eventually
from tests.conftest import Stack
from tests.factories import tenant_id_of
from tests.smtp_server import SmtpServer

# -- helpers -----------------------------------------------------------------------------------------------------------


def owner_of(tenant_id: uuid.UUID) -> User:
    with tenant_session(tenant_id) as session:
        owner = session.scalar(select(User).where(User.role == "owner"))
        assert owner is not None
        session.expunge(owner)
        return owner


def use_mail_server(tenant_id: uuid.UUID, server: SmtpServer) -> None:
    """What the admin saves on the Email page (tested through the page itself below)."""
    with tenant_session(tenant_id) as session:
        owner = session.scalar(select(User).where(User.role == "owner"))
        assert owner is not None
        mail_settings.do_save_mail_settings(
            session, owner, audit.Client(), server.settings_form(), os.environ["SECRET_KEY"]
        )


def closed_now(tenant_id: uuid.UUID) -> None:
    """Business hours that are over for today: today is a holiday, otherwise 9:00 to 17:00 in Paris."""
    today = datetime.now(UTC).astimezone(mail_hours.ZoneInfo("Europe/Paris")).date().isoformat()
    form = {"timezone": "Europe/Paris", "holidays": today}
    form |= {f"hours_{day}": "09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    with tenant_session(tenant_id) as session:
        owner = session.scalar(select(User).where(User.role == "owner"))
        assert owner is not None
        do_save_schedule(session, owner, audit.Client(), None, form)


def offline_message(base_url: str, token: str, **fields: Any) -> httpx.Response:
    body = {"visitor_token": token, "client_id": uuid.uuid4().hex, **fields}
    return httpx.post(f"{base_url}/api/v1/widget/offline-message", json=body, timeout=10)


def conversation_of(tenant_id: uuid.UUID, visitor_id: str) -> Conversation | None:
    with tenant_session(tenant_id) as session:
        found = session.scalar(select(Conversation).where(Conversation.visitor_id == uuid.UUID(visitor_id)))
        if found is not None:
            session.expunge(found)
        return found


def bodies(tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> list[str]:
    with tenant_session(tenant_id) as session:
        query = select(Message.body).where(Message.conversation_id == conversation_id).order_by(Message.seq)
        return list(session.scalars(query))


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def inbound(stack: Stack) -> Iterator[int]:
    """The Procfile's optional `mail` process: the inbound SMTP listener, on a port of its own."""
    port = free_port()
    stack.start("mail", "python -m workers.inbound_mail", env={**stack.env, "DESKBELL_MAIL_INBOUND_PORT": str(port)})
    wait_for_port(port)
    yield port
    stack.stop("mail")


@pytest.fixture
def shop(stack: Stack, smtp: SmtpServer) -> dict[str, Any]:
    """A tenant with an agent, whose mail goes to the test SMTP server."""
    tenant = stack.bootstrap("ann")
    tenant["id"] = tenant_id_of(tenant)
    use_mail_server(tenant["id"], smtp)
    return tenant


def leave_offline_message(stack: Stack, shop: dict[str, Any], email: str, text: str) -> tuple[str, Conversation]:
    """A visitor opens the widget and leaves a message with their email; returns their id and the conversation."""
    session = clients.session(stack.base_url, shop["site_key"]).json()
    assert offline_message(stack.base_url, session["visitor_token"], email=email, message=text).status_code == 202
    conversation = eventually(lambda: conversation_of(shop["id"], session["visitor_id"]), "the conversation")
    return session["visitor_id"], conversation


# -- business hours --------------------------------------------------------------------------------------------------


def paris_weekdays() -> Schedule:
    weekly = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    return Schedule(timezone="Europe/Paris", weekly=weekly, holidays=["2026-12-25"])


def test_on_friday_evening_the_team_is_back_on_monday_at_nine() -> None:
    friday_evening = datetime(2026, 11, 27, 18, 30, tzinfo=mail_hours.ZoneInfo("Europe/Paris"))
    status = mail_hours.status(paris_weekdays(), friday_evening)
    assert not status.open
    assert status.back_at == datetime(2026, 11, 30, 9, 0, tzinfo=mail_hours.ZoneInfo("Europe/Paris"))
    assert status.as_json()["back_weekday"] == "mon" and status.as_json()["back_time"] == "9:00"
    assert status.as_json()["timezone"] == "Europe/Paris"


def test_inside_the_hours_the_team_is_open_and_a_holiday_is_closed_all_day() -> None:
    paris = mail_hours.ZoneInfo("Europe/Paris")
    assert mail_hours.status(paris_weekdays(), datetime(2026, 11, 27, 10, 0, tzinfo=paris)).open
    christmas = mail_hours.status(paris_weekdays(), datetime(2026, 12, 25, 10, 0, tzinfo=paris))
    assert not christmas.open and christmas.back_at == datetime(2026, 12, 28, 9, 0, tzinfo=paris)
    assert mail_hours.status(None).open  # no schedule: always open


def test_outside_business_hours_the_session_says_when_the_team_is_back(stack: Stack, shop: dict[str, Any]) -> None:
    assert clients.session(stack.base_url, shop["site_key"]).json()["hours"]["open"] is True
    closed_now(shop["id"])
    hours = clients.session(stack.base_url, shop["site_key"]).json()["hours"]
    assert hours["open"] is False
    assert hours["text"].startswith("We're back ") and hours["text"].endswith(" at 9:00 (Europe/Paris).")


# -- the reply address and the reply's text --------------------------------------------------------------------------


def test_a_reply_address_names_its_visitor_whatever_the_case_and_a_tampered_one_names_nobody() -> None:
    visitor = uuid.uuid4()
    address = mail.reply_address("key", visitor, "mail.shop.test")
    assert len(address.split("@")[0]) <= 64  # a local part's limit
    assert mail.visitor_of_address("key", address) == visitor
    assert mail.visitor_of_address("key", f"<{address.upper()}>") == visitor  # mail systems may change the case
    assert mail.visitor_of_address("other key", address) is None
    token = address.split("+")[1].split("@")[0]
    tampered = "reply+" + ("b" if token[0] != "b" else "c") + token[1:] + "@mail.shop.test"
    assert mail.visitor_of_address("key", tampered) is None
    assert mail.visitor_of_address("key", "reply+!!!@mail.shop.test") is None


@pytest.mark.parametrize(
    "written",
    [
        "Thanks, that works.\n\nOn Fri, 27 Nov 2026 at 10:00, Shop <help@shop.test> wrote:\n> Try this.\n",
        "Thanks, that works.\n\n-----Original Message-----\nFrom: Shop\nTry this.\n",
        "Thanks, that works.\n________________________________\nFrom: Shop <help@shop.test>\nTry this.\n",
        "Thanks, that works.\n-- \nGrace Hopper\nUS Navy\n",
        "## Reply above this line ##\n",
    ],
)
def test_the_quoted_email_and_the_signature_are_cut_off_a_reply(written: str) -> None:
    expected = "" if written.startswith("##") else "Thanks, that works."
    assert mail.strip_quoted(written) == expected


def test_an_html_only_reply_is_read_as_text() -> None:
    from workers.inbound_mail import text_of

    message = EmailMessage()
    message.set_content("<p>Yes &amp; thanks</p><div>Grace</div>", subtype="html")
    assert text_of(message).split() == ["Yes", "&", "thanks", "Grace"]


# -- offline messages and email out ----------------------------------------------------------------------------------


def test_an_offline_message_lands_in_the_inbox_and_the_agents_reply_is_emailed(
    stack: Stack, shop: dict[str, Any], smtp: SmtpServer
) -> None:
    visitor_id, conversation = leave_offline_message(stack, shop, "grace@navy.test", "Can I return my order?")
    assert bodies(shop["id"], conversation.id) == ["Can I return my order?"]
    agent = clients.logged_in_agent(stack.base_url, shop)
    assert "Can I return my order?" in agent.thread(str(conversation.id))

    assert agent.reply(str(conversation.id), "Yes, within 30 days.").status_code == 200
    email = smtp.wait_for("grace@navy.test", "Re: your message")
    assert "Yes, within 30 days." in email.text
    assert str(email.message["Reply-To"]).startswith("reply+")
    assert mail.visitor_of_address(stack.env["SECRET_KEY"], str(email.message["Reply-To"])) == uuid.UUID(visitor_id)


def test_a_visitor_who_left_their_email_in_the_chat_gets_the_reply_by_email_once_they_have_gone(
    stack: Stack, shop: dict[str, Any], smtp: SmtpServer
) -> None:
    async def chat(email: str, first: str, second: str | None = None) -> tuple[str, clients.Visitor]:
        """The widget's "leave us a message" box: the email goes with a session request, then the message."""
        answer = await asyncio.to_thread(
            httpx.post,
            f"{stack.base_url}/api/v1/widget/session",
            json={"site_key": shop["site_key"], "email": email},
            timeout=10,
        )
        visitor = clients.Visitor(stack.base_url, shop["site_key"], token=answer.json()["visitor_token"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "m1", "body": first})
        conversation_id = (await visitor.expect("ack"))["conversation_id"]
        return conversation_id, visitor

    async def scenario() -> tuple[str, str]:
        gone, left = await chat("gone@away.test", "Price of the red kettle?")
        stays, stayer = await chat("stays@here.test", "Price of the blue kettle?")
        agent = clients.logged_in_agent(stack.base_url, shop)
        await asyncio.to_thread(agent.reply, gone, "It is 40 euros.")
        await asyncio.to_thread(agent.reply, stays, "It is 35 euros.")
        while (await stayer.expect("message")).get("sender") != "agent":  # the reply reaches the open chat
            pass
        await stayer.send({"type": "message", "client_id": "m2", "body": "Thanks!"})
        await stayer.expect("ack")
        await left.close()
        await stayer.close()
        return gone, stays

    gone, _ = asyncio.run(scenario())
    # The sweep of a worker whose DESKBELL_MAIL_AWAY_MINUTES has passed (the stack's waits 10 minutes).
    with system_session() as session:
        mail_outbox.do_queue_replies(session, timedelta(hours=1), away=timedelta(0))
    email = smtp.wait_for("gone@away.test", "Re: your message")
    assert "It is 40 euros." in email.text
    with tenant_session(shop["id"]) as session:
        replies = session.scalars(select(MailDelivery.recipients).where(MailDelivery.kind == "reply")).all()
    assert replies == [["gone@away.test"]]  # the visitor who wrote back read it in the chat


def test_a_visitor_who_left_their_email_and_then_writes_by_email_gets_every_reply_by_email(
    stack: Stack, shop: dict[str, Any]
) -> None:
    answer = httpx.post(
        f"{stack.base_url}/api/v1/widget/session", json={"site_key": shop["site_key"], "email": "k@b.test"}, timeout=10
    ).json()
    visitor_id = uuid.UUID(answer["visitor_id"])
    with tenant_session(shop["id"]) as session:
        assert session.get(MailThread, visitor_id).reason == "away"  # type: ignore[union-attr]
        mail_outbox.do_follow_by_email(session, visitor_id, "someone@else.test", "email")
        thread = session.get(MailThread, visitor_id)
        assert thread is not None and (thread.reason, thread.email) == ("email", "k@b.test")


def test_the_visitors_email_reply_comes_back_into_the_thread(
    stack: Stack, shop: dict[str, Any], smtp: SmtpServer, inbound: int
) -> None:
    _, conversation = leave_offline_message(stack, shop, "ada@math.test", "Do you ship to Lyon?")
    agent = clients.logged_in_agent(stack.base_url, shop)
    agent.reply(str(conversation.id), "We do. Which product?")
    ours = smtp.wait_for("ada@math.test", "Re: your message")

    reply = EmailMessage()
    reply["From"], reply["To"] = "ada@math.test", str(ours.message["Reply-To"])
    reply["Subject"], reply["Message-ID"] = "Re: " + str(ours.message["Subject"]), "<reply-1@math.test>"
    quoted = "\n".join("> " + line for line in ours.text.splitlines())
    reply.set_content(f"The blue kettle, please.\n\nOn Fri, 27 Nov 2026, Shop wrote:\n{quoted}\n")
    out_of_office = EmailMessage()
    out_of_office["From"], out_of_office["To"] = "ada@math.test", str(ours.message["Reply-To"])
    out_of_office["Subject"], out_of_office["Auto-Submitted"] = "Out of office", "auto-replied"
    out_of_office.set_content("I am away until Monday.")
    with smtplib.SMTP("127.0.0.1", inbound, timeout=10) as client:
        client.send_message(out_of_office)  # taken, and dropped: no visitor wrote it
    for _ in range(2):  # the sending server retries: stored once
        with smtplib.SMTP("127.0.0.1", inbound, timeout=10) as client:
            client.send_message(reply)

    expected = ["Do you ship to Lyon?", "We do. Which product?", "The blue kettle, please."]
    eventually(lambda: bodies(shop["id"], conversation.id) == expected, "the email reply in the thread")
    assert agent.thread(str(conversation.id))[-1] == "The blue kettle, please."


def test_the_inbound_listener_refuses_addresses_that_are_not_signed_reply_addresses(inbound: int) -> None:
    forged = mail.reply_address("not-the-secret-key", uuid.uuid4(), "localhost")
    with smtplib.SMTP("127.0.0.1", inbound, timeout=10) as client:
        client.ehlo()
        client.mail("someone@spam.test")
        assert client.rcpt(forged)[0] == 550
        assert client.rcpt("postmaster@localhost")[0] == 550


def test_a_visitor_asks_for_the_transcript_and_gets_it_by_email(
    stack: Stack, shop: dict[str, Any], smtp: SmtpServer
) -> None:
    stranger = clients.session(stack.base_url, shop["site_key"]).json()["visitor_token"]
    assert transcript(stack.base_url, stranger, "x@y.test", uuid.uuid4().hex).status_code == 404  # nothing yet

    async def chat() -> str:
        visitor = clients.Visitor(stack.base_url, shop["site_key"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "c1", "body": "Where is my parcel?"})
        await visitor.expect("ack")
        await visitor.close()
        assert visitor.token is not None
        return visitor.token

    token = asyncio.run(chat())
    request_id = uuid.uuid4().hex
    for _ in range(2):  # a double click: one email
        assert transcript(stack.base_url, token, "linus@kernel.test", request_id).status_code == 202
    email = smtp.wait_for("linus@kernel.test", "Your conversation with")
    assert "You:\nWhere is my parcel?" in email.text
    with tenant_session(shop["id"]) as session:
        assert len(session.scalars(select(MailDelivery).where(MailDelivery.kind == "transcript")).all()) == 1

    # Anyone can open a chat and type any address: a visitor gets 3 an hour (DESKBELL_MAIL_TRANSCRIPTS_PER_HOUR).
    for _ in range(2):
        assert transcript(stack.base_url, token, "linus@kernel.test", uuid.uuid4().hex).status_code == 202
    refused = transcript(stack.base_url, token, "someone.else@victim.test", uuid.uuid4().hex)
    assert refused.status_code == 429
    assert refused.json()["message"] == "You can ask for 3 emails an hour. Try again later."


def transcript(base_url: str, token: str, email: str, request_id: str) -> httpx.Response:
    body = {"visitor_token": token, "email": email, "request_id": request_id}
    return httpx.post(f"{base_url}/api/v1/widget/transcript", json=body, timeout=10)


def test_offline_message_mistakes_get_clear_answers_and_nothing_is_stored(stack: Stack, shop: dict[str, Any]) -> None:
    session = clients.session(stack.base_url, shop["site_key"]).json()
    token = session["visitor_token"]
    no_email = offline_message(stack.base_url, token, email="not an email", message="Hi")
    assert no_email.status_code == 400 and no_email.json()["error"] == "invalid_email"
    assert "email address" in no_email.json()["message"]
    empty = offline_message(stack.base_url, token, email="a@b.test", message="   ")
    assert empty.status_code == 400 and empty.json()["message"] == "Write your message."
    too_long = offline_message(stack.base_url, token, email="a@b.test", message="x" * 100_000)
    assert too_long.status_code == 413 and too_long.json()["error"] == "message_too_long"
    assert offline_message(stack.base_url, "forged", email="a@b.test", message="Hi").status_code == 401
    assert conversation_of(shop["id"], session["visitor_id"]) is None


def test_a_missed_chat_is_emailed_to_the_admins(stack: Stack, shop: dict[str, Any], smtp: SmtpServer) -> None:
    with tenant_session(shop["id"]) as session:
        row = session.get(Tenant, shop["id"])
        assert row is not None
        row.settings = {**row.settings, "routing": {**row.settings.get("routing", {}), "missed_after_seconds": 1}}
        session.commit()
    conversation_id = clients.start_conversation(stack.base_url, shop["site_key"], "Anyone there?")

    email = smtp.wait_for(shop["owner_email"], "Missed chat")
    assert "Anyone there?" in email.text and f"/console/c/{conversation_id}" in email.text
    with tenant_session(shop["id"]) as session:
        conversation = session.get(Conversation, uuid.UUID(conversation_id))
        assert conversation is not None and conversation.missed_at is not None


# -- the admin page --------------------------------------------------------------------------------------------------


def test_an_admin_saves_the_mail_server_and_sends_a_test_email(stack: Stack, smtp: SmtpServer) -> None:
    tenant = stack.bootstrap()
    admin = Agent(stack.base_url)
    assert admin.login(tenant["owner_email"], tenant["owner_password"]).status_code == 200
    page = admin.client.get("/admin/mail")
    assert page.status_code == 200 and "Outgoing mail server" in page.text

    csrf = admin.csrf(page.text)
    early = admin.client.post("/admin/mail/test", data={"csrf_token": csrf})
    assert "Save the mail server&#39;s settings first" in early.text
    bad = admin.client.post("/admin/mail", data={**smtp.settings_form(), "port": "99999", "csrf_token": csrf})
    assert bad.status_code == 400 and "between 1 and 65535" in bad.text
    form = {**smtp.settings_form(), "username": "", "password": "s3cret-pass", "csrf_token": csrf}
    saved = admin.client.post("/admin/mail", data=form)
    assert saved.status_code == 200 and "Email settings saved." in saved.text
    assert "s3cret-pass" not in saved.text
    with tenant_session(tenant_id_of(tenant)) as session:
        stored = session.scalar(select(MailSettings))
        assert stored is not None and "s3cret-pass" not in stored.password_encrypted
        assert mail_settings.decrypt_password(stored.password_encrypted, stack.env["SECRET_KEY"]) == "s3cret-pass"

    tested = admin.client.post("/admin/mail/test", data={"csrf_token": admin.csrf(saved.text)})
    assert f"A test email was sent to {tenant['owner_email']}." in tested.text
    assert smtp.wait_for(tenant["owner_email"], "Deskbell test email")


# -- the circuit breaker (issue 9) ----------------------------------------------------------------------------------


def test_a_dead_mail_server_opens_the_breaker_and_a_trial_send_closes_it_when_the_server_is_back() -> None:
    server = SmtpServer()  # not started: nothing listens on its port
    config = Mail(breaker_failures=2, breaker_reset_seconds=1, timeout_seconds=2)
    smtp = mail_settings.SmtpConfig("127.0.0.1", server.port, "none", "", "", "help@shop.test", "")
    target = f"smtp:127.0.0.1:{server.port}"

    def send(n: int) -> None:
        mail.send(smtp, mail.message(smtp, ["v@x.test"], f"n{n}", "hello", f"<n{n}@test>"), config)

    for n in range(2):
        with pytest.raises(mail.MailUnavailable):
            send(n)
    assert mail.breaker_states()[target] == "open"
    assert metrics.CIRCUIT_STATE.labels(target)._value.get() == 2
    server.start()
    try:
        with pytest.raises(mail.MailUnavailable, match="circuit open"):
            send(2)  # refused without trying the server, though it is back
        assert server.received == []
        eventually(lambda: _sent(send, 3), "a trial send after the cool-down", timeout=10)
        assert mail.breaker_states()[target] == "closed"
        assert [str(r.message["Subject"]) for r in server.received] == ["n3"]
    finally:
        server.stop()


def _sent(send: Callable[[int], None], n: int) -> bool:
    try:
        send(n)
    except mail.MailUnavailable:
        return False
    return True


def test_while_the_mail_server_is_down_chat_goes_on_and_the_email_goes_out_when_it_is_back(
    stack: Stack, shop: dict[str, Any]
) -> None:
    server = SmtpServer()  # the tenant's mail server, down
    use_mail_server(shop["id"], server)
    _, conversation = leave_offline_message(stack, shop, "joan@arc.test", "Is the shop open on Sunday?")
    agent = clients.logged_in_agent(stack.base_url, shop)
    agent.reply(str(conversation.id), "Yes, from 10:00.")

    def tried() -> MailDelivery | None:
        with tenant_session(shop["id"]) as session:
            return session.scalar(select(MailDelivery).where(MailDelivery.kind == "reply", MailDelivery.attempts > 0))

    delivery = eventually(tried, "a failed try")
    assert delivery.status == "queued" and "Connection refused" in delivery.last_error
    # The chat itself does not wait for the mail server.
    other = clients.start_conversation(stack.base_url, shop["site_key"], "Still there?")
    assert bodies(shop["id"], uuid.UUID(other)) == ["Still there?"]

    eventually(lambda: (tried() or delivery).attempts >= 2, "a second failed try")
    doctor = mail_command(stack)
    assert doctor.returncode == 1 and "FAIL  mail" in doctor.stdout and "Connection refused" in doctor.stdout

    server.start()
    try:
        email = server.wait_for("joan@arc.test", "Re: your message", timeout=90)
        assert "Yes, from 10:00." in email.text
    finally:
        server.stop()
    assert mail_command(stack).returncode == 0


def test_retries_wait_longer_each_time_up_to_the_longest_wait() -> None:
    config = Mail(retry_seconds=5, retry_max_seconds=600)
    assert [mail_outbox.retry_delay(config, n) for n in (1, 2, 3, 4, 8, 20)] == [5, 10, 20, 40, 600, 600]


def test_after_the_last_try_an_email_is_marked_failed_with_the_servers_error(
    stack: Stack, shop: dict[str, Any]
) -> None:
    use_mail_server(shop["id"], SmtpServer())  # never started
    conversation_id = clients.start_conversation(stack.base_url, shop["site_key"], "Hello?")
    with tenant_session(shop["id"]) as session:
        conversation = session.get(Conversation, uuid.UUID(conversation_id))
        assert conversation is not None
        visitor_id = conversation.visitor_id
        delivery = mail_outbox.do_queue_transcript(session, visitor_id, "last@try.test", uuid.uuid4().hex, 3)
    settings = load_settings()
    outcome = mail_outbox.deliver(mail_outbox.Job(shop["id"], delivery.id), settings, last_try=True)
    with tenant_session(shop["id"]) as session:
        row = session.get(MailDelivery, delivery.id)
        assert row is not None
        assert row.status == "failed" and "Connection refused" in row.last_error
    assert outcome.status in ("failed", "already")  # the stack's mailer may have tried it first


def test_the_inbound_listener_refuses_an_email_over_the_size_limit(stack: Stack, inbound: int) -> None:
    huge = EmailMessage()
    huge["From"], huge["To"] = "big@sender.test", mail.reply_address(stack.env["SECRET_KEY"], uuid.uuid4(), "x.test")
    huge["Subject"] = "Big"
    huge.set_content("x" * (Mail.inbound_max_bytes + 1000))
    with smtplib.SMTP("127.0.0.1", inbound, timeout=10) as client:
        with pytest.raises(smtplib.SMTPException) as refused:
            client.send_message(huge)
    assert "552" in str(refused.value)


def mail_command(stack: Stack) -> subprocess.CompletedProcess[str]:
    """`deskbell mail`, as an operator runs it."""
    command = [sys.executable, "-m", "desk.cli", "mail"]
    return subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=60)
