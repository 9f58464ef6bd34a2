"""Which emails to send, kept in PostgreSQL (docs/architecture.md, "Email"): `mail_deliveries` is the outbox.

- A visitor who leaves an offline message, or writes in by email, gets a `MailThread`; the mailer's sweep turns
  each agent's reply in their thread into a `reply:<message id>` delivery (`do_queue_replies`).
- A missed chat becomes a `missed:<conversation>` delivery to the team's admins (`do_queue_missed`, the
  sweeper's hook); a visitor's "Email me this conversation" a `transcript:<request>` one.
- The sweep hands queued deliveries to JetStream (`do_take_unpublished`); the mailer sends each one under its
  row's lock and marks it sent in the same transaction (`deliver`), so two workers never both send it, and a
  redelivered job finds it sent. A worker that dies after the server took the email and before the commit sends
  it again on the retry (at least once): the email keeps its Message-ID, so the visitor's mail system sees the
  same email twice, not two emails.
"""

from __future__ import annotations

import smtplib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from desk import mail, metrics
from desk.actions.admin import NotFound
from desk.actions.lapses import Missed
from desk.db import system_session, tenant_session
from desk.mail_settings import SmtpConfig, config_of
from desk.models import (
    Conversation,
    MailDelivery,
    MailThread,
    Message,
    Site,
    TeamMember,
    User,
    Visitor,
)
from desk.settings import Mail, Settings

MANAGERS = ("admin", "owner")
SWEEP_BATCH = 500


# -- queueing ------------------------------------------------------------------------------------------------------


def do_follow_by_email(session: Session, visitor_id: uuid.UUID, email: str, reason: str) -> MailThread:
    """From now on, agents' replies to this visitor are emailed to `email` too (an offline message, an email
    reply). Records the email on the visitor when they had none. Only the visitor, in the widget ("offline"),
    changes the address of a thread: an email reply's sender may be anyone the email was forwarded to. Commits."""
    visitor = session.get(Visitor, visitor_id, with_for_update=True)
    if visitor is None:
        raise NotFound("No such visitor.")
    if not visitor.email:
        visitor.email = email
    thread = session.get(MailThread, visitor_id, with_for_update=True)
    if thread is None:
        # Replies already in the thread were seen in the widget: only the ones after this are emailed.
        thread = MailThread(
            visitor_id=visitor_id, tenant_id=visitor.tenant_id, email=email, reason=reason, mailed_seq=visitor.last_seq
        )
        session.add(thread)
    else:
        if thread.reason == "away":  # they wrote by email, or left a message: replies go by email from now on
            thread.reason = reason
        if reason == "offline":
            thread.email = email
    session.commit()
    return thread


def follow_when_away(session: Session, visitor: Visitor, email: str) -> None:
    """A visitor left `email` in the chat ("leave us a message" while no agent is online): agents' replies reach
    them by email too once they seem to have left (`do_queue_replies`, `away`). Does not commit: part of the
    caller's transaction (the session request)."""
    session.flush()  # a visitor made by this request has its id, tenant and last_seq only once flushed
    thread = session.get(MailThread, visitor.id)
    if thread is None:
        session.add(
            MailThread(visitor_id=visitor.id, tenant_id=visitor.tenant_id, email=email, reason="away",
                       mailed_seq=visitor.last_seq)
        )  # fmt: skip
    elif thread.reason == "away":
        thread.email = email


class TooMany(Exception):
    """The visitor asked for more transcripts than DESKBELL_MAIL_TRANSCRIPTS_PER_HOUR."""


def do_queue_transcript(
    session: Session, visitor_id: uuid.UUID, email: str, request_id: str, per_hour: int
) -> MailDelivery:
    """The visitor's latest conversation, to be emailed to them; a repeated request (same id) is queued once,
    and at most `per_hour` an hour. Commits."""
    visitor = session.get(Visitor, visitor_id, with_for_update=True)  # one count at a time per visitor
    if visitor is None:
        raise NotFound("No such visitor.")
    key = f"transcript:{request_id}"
    recent = session.scalar(
        select(func.count())
        .select_from(MailDelivery)
        .join(Conversation, Conversation.id == MailDelivery.conversation_id)
        .where(
            Conversation.visitor_id == visitor_id,
            MailDelivery.kind == "transcript",
            MailDelivery.key != key,
            MailDelivery.created_at > datetime.now(UTC) - timedelta(hours=1),
        )
    )
    if (recent or 0) >= per_hour:
        raise TooMany(f"at most {per_hour} transcripts an hour")
    conversation_id = session.scalar(
        select(Conversation.id).where(Conversation.visitor_id == visitor_id).order_by(Conversation.created_at.desc())
    )
    if conversation_id is None:
        raise NotFound("There is no conversation to send yet.")
    session.execute(
        insert(MailDelivery)
        .values(
            tenant_id=visitor.tenant_id,
            key=key,
            kind="transcript",
            conversation_id=conversation_id,
            recipients=[email],
        )
        .on_conflict_do_nothing(constraint="uq_mail_deliveries_key")
    )
    session.commit()
    return session.scalars(select(MailDelivery).where(MailDelivery.key == key)).one()


def _admins(session: Session, team_id: uuid.UUID | None) -> list[str]:
    """The team's admins and owners; without a team (or none in it), the tenant's."""
    managers = select(User.email).where(User.role.in_(MANAGERS), User.is_active).order_by(User.email)
    if team_id is not None:
        in_team = list(session.scalars(managers.join(TeamMember, TeamMember.user_id == User.id).where(
            TeamMember.team_id == team_id
        )))  # fmt: skip
        if in_team:
            return in_team
    return list(session.scalars(managers))


def do_queue_missed(mark: Missed) -> None:
    """The sweeper's missed-chat hook (desk/actions/lapses.py, MISSED_HOOKS): email the team's admins. Once per
    conversation, whichever sweeper marks it."""
    with tenant_session(mark.tenant_id) as session:
        recipients = _admins(session, mark.team_id)
        if not recipients:
            return
        session.execute(
            insert(MailDelivery)
            .values(
                tenant_id=mark.tenant_id,
                key=f"missed:{mark.conversation_id}",
                kind="missed",
                conversation_id=mark.conversation_id,
                recipients=recipients,
            )
            .on_conflict_do_nothing(constraint="uq_mail_deliveries_key")
        )
        session.commit()


def do_queue_replies(session: Session, lookback: timedelta, away: timedelta | None = None) -> int:
    """Agents' replies in mail threads not looked at yet, queued as `reply:<message id>` deliveries; each
    thread's `mailed_seq` moves on in the same transaction. A system session (every tenant). Commits.

    In an "away" thread (an email left in the chat) a reply is emailed only once it is `away` old and the visitor
    has not written since (they have probably left the page); younger replies wait for a later sweep, and a
    visitor who wrote back read it in the chat. `away` None: such threads are not emailed."""
    threads = session.execute(
        select(MailThread, Visitor.last_seq, Visitor.last_seen_at)
        .join(Visitor, Visitor.id == MailThread.visitor_id)
        .where(MailThread.mailed_seq < Visitor.last_seq)
        .with_for_update(of=MailThread, skip_locked=True)
        .limit(SWEEP_BATCH)
    ).all()
    now = datetime.now(UTC)
    since = now - lookback
    queued = 0
    for thread, last_seq, last_seen_at in threads:
        if thread.reason == "away" and away is None:
            continue
        messages = session.execute(
            select(Message.id, Message.conversation_id, Message.seq, Message.sender, Message.created_at)
            .where(Message.visitor_id == thread.visitor_id, Message.seq > thread.mailed_seq, Message.seq <= last_seq)
            .order_by(Message.seq)
        ).all()
        replies = []
        waiting = thread.reason == "away"  # replies wait until the visitor seems gone
        watermark = thread.mailed_seq if waiting else last_seq
        for message_id, conversation_id, seq, sender, created_at in messages:
            if waiting and created_at > now - away:  # type: ignore[operator]
                break  # too young to tell whether the visitor is still there: a later sweep decides
            if waiting and last_seen_at > created_at:
                watermark = seq  # the visitor wrote after it: they read it in the chat
                continue
            if sender == "agent" and created_at > since:
                replies.append((message_id, conversation_id))
            watermark = max(watermark, seq)
        for message_id, conversation_id in replies:
            session.execute(
                insert(MailDelivery)
                .values(
                    tenant_id=thread.tenant_id,
                    key=f"reply:{message_id}",
                    kind="reply",
                    conversation_id=conversation_id,
                    message_id=message_id,
                    recipients=[thread.email],
                )
                .on_conflict_do_nothing(constraint="uq_mail_deliveries_key")
            )
            queued += 1
        thread.mailed_seq = watermark
    session.commit()
    return queued


@dataclass(frozen=True)
class Job:
    tenant_id: uuid.UUID
    delivery_id: int


def do_take_unpublished(session: Session, republish: timedelta, limit: int = SWEEP_BATCH) -> list[Job]:
    """Queued deliveries not handed to JetStream yet (or longer ago than `republish`), marked as handed. A system
    session; concurrent sweeps take different rows. Commits."""
    due = (
        select(MailDelivery.id)
        .where(
            MailDelivery.status == "queued",
            or_(MailDelivery.published_at.is_(None), MailDelivery.published_at < datetime.now(UTC) - republish),
        )
        .order_by(MailDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(MailDelivery)
        .where(MailDelivery.id.in_(due.scalar_subquery()))
        .values(published_at=datetime.now(UTC))
        .returning(MailDelivery.tenant_id, MailDelivery.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return [Job(tenant_id, delivery_id) for tenant_id, delivery_id in rows]


def do_forget_published(jobs: list[Job]) -> None:
    """Deliveries whose publish failed: the next sweep hands them over again."""
    with system_session() as session:
        session.execute(
            update(MailDelivery)
            .where(MailDelivery.id.in_([j.delivery_id for j in jobs]))
            .values(published_at=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()


# -- sending -------------------------------------------------------------------------------------------------------


class GiveUp(Exception):
    """This email cannot be sent, however often it is tried (no mail server set up, refused by the server)."""


def _site_name(session: Session, visitor: Visitor) -> str:
    return session.scalar(select(Site.name).where(Site.id == visitor.site_id)) or "us"


def compose(session: Session, delivery: MailDelivery, smtp: SmtpConfig, config: Settings) -> mail.EmailMessage:
    """The email a delivery stands for, from the rows as they are now."""
    message_id = f"<deskbell.{delivery.key.replace(':', '.')}@{config.mail.inbound_domain}>"
    conversation = session.get(Conversation, delivery.conversation_id) if delivery.conversation_id else None
    if conversation is None:
        raise GiveUp("its conversation was deleted")
    visitor = session.get(Visitor, conversation.visitor_id)
    assert visitor is not None
    site = _site_name(session, visitor)
    reply_to = mail.reply_address(config.secret_key, visitor.id, config.mail.inbound_domain)
    if delivery.kind == "reply":
        message = session.get(Message, delivery.message_id)
        if message is None:
            raise GiveUp("its message was deleted")
        body = mail.reply_text(message.author_name, message.body, site)
        return mail.message(smtp, delivery.recipients, f"Re: your message to {site}", body, message_id, reply_to)
    if delivery.kind == "transcript":
        messages = session.scalars(
            select(Message).where(Message.conversation_id == conversation.id).order_by(Message.seq)
        )
        lines = [
            (f"{m.created_at:%Y-%m-%d %H:%M} UTC", "You" if m.sender == "visitor" else (m.author_name or site), m.body)
            for m in messages
        ]
        body = mail.transcript_text(site, lines)
        return mail.message(smtp, delivery.recipients, f"Your conversation with {site}", body, message_id, reply_to)
    if delivery.kind == "missed":
        who = visitor.name or visitor.email or "A visitor"
        link = f"{config.public_url or ''}/console/c/{conversation.id}"
        body = (
            f"{who} waited without a reply and the chat was marked missed.\n\n"
            f"Last message: {conversation.last_message_preview}\n\nOpen it: {link}\n"
        )
        return mail.message(smtp, delivery.recipients, f"Missed chat: {who}", body, message_id)
    raise GiveUp(f"unknown kind {delivery.kind!r}")


@dataclass(frozen=True)
class Outcome:
    status: str  # sent, failed, already (sent or failed before), retry
    attempts: int
    error: str = ""


def deliver(job: Job, config: Settings, last_try: bool) -> Outcome:
    """Send one delivery under its row's lock and record what happened, in one transaction. Blocking: the
    mailer runs it in a thread. `retry`: not sent this time, worth trying again (the row keeps `queued`, unless
    this was the `last_try`)."""
    with tenant_session(job.tenant_id) as session:
        delivery = session.get(MailDelivery, job.delivery_id, with_for_update=True, populate_existing=True)
        if delivery is None or delivery.status != "queued":
            return Outcome("already", delivery.attempts if delivery else 0)
        delivery.attempts += 1
        try:
            smtp = config_of(session, config.secret_key)
            if smtp is None:
                raise GiveUp("no mail server is set up (admin, Email)")
            mail.send(smtp, compose(session, delivery, smtp, config), config.mail)
        except (GiveUp, smtplib.SMTPException) as exc:
            # smtplib errors reaching here are the server refusing this email (desk/mail.py): no retry helps.
            delivery.status, delivery.last_error = "failed", f"{type(exc).__name__}: {exc}"[:1000]
            session.commit()
            return Outcome("failed", delivery.attempts, delivery.last_error)
        except mail.MailUnavailable as exc:
            delivery.last_error = str(exc)[:1000]
            if last_try:
                delivery.status = "failed"
            session.commit()
            return Outcome("failed" if last_try else "retry", delivery.attempts, delivery.last_error)
        delivery.status, delivery.sent_at, delivery.last_error = "sent", datetime.now(UTC), ""
        session.commit()
        metrics.MAIL_SENT.labels(delivery.kind).inc()
        return Outcome("sent", delivery.attempts)


def retry_delay(config: Mail, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: retry_seconds doubling, at most retry_max."""
    return float(min(config.retry_seconds * 2 ** max(0, attempts - 1), config.retry_max_seconds))
