"""Is email getting out? (docs/operations.md, "Email"): the outbox as the workers left it, for `deskbell mail`
and the doctor. A worker's circuit breaker lives in its memory (and in its `deskbell_circuit_state` gauge); what
every worker writes to the outbox (each try's error, "circuit open" included) is what this reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from desk.db import system_session
from desk.doctor import Check
from desk.models import MailDelivery

# A queued email that has failed this many tries makes the check fail: one failure is a blip, two in a row
# (at least DESKBELL_MAIL_RETRY_SECONDS apart) is a mail server to look at.
FAILING_AFTER_TRIES = 2
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class MailStatus:
    sent: int  # in the last 24 hours
    waiting: int  # queued now
    failing: int  # queued, and failed at least FAILING_AFTER_TRIES tries
    failed: int  # given up on in the last 24 hours
    last_error: str

    @property
    def ok(self) -> bool:
        return self.failing == 0


def status() -> MailStatus:
    since = datetime.now(UTC) - WINDOW
    with system_session() as session:  # every tenant's outbox, on purpose
        counts = dict(
            session.execute(
                select(MailDelivery.status, func.count())
                .where((MailDelivery.status == "queued") | (MailDelivery.created_at > since))
                .group_by(MailDelivery.status)
            ).all()
        )
        failing = session.scalar(
            select(func.count()).where(
                MailDelivery.status == "queued", MailDelivery.attempts >= FAILING_AFTER_TRIES
            ).select_from(MailDelivery)
        )
        last_error = session.scalar(
            select(MailDelivery.last_error)
            .where(MailDelivery.last_error != "", MailDelivery.created_at > since)
            .order_by(MailDelivery.id.desc())
            .limit(1)
        )
    return MailStatus(
        sent=counts.get("sent", 0),
        waiting=counts.get("queued", 0),
        failing=failing or 0,
        failed=counts.get("failed", 0),
        last_error=last_error or "",
    )


def check() -> Check:
    """The doctor's line for email."""
    try:
        found = status()
    except Exception as exc:  # a check that cannot run is a failed check, and says why
        return Check("mail", False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    detail = f"{found.sent} sent, {found.failed} failed in 24 h; {found.waiting} waiting"
    if not found.ok:
        detail += f", {found.failing} failing: {found.last_error[:200]} (admin, Email: check the mail server)"
    return Check("mail", found.ok, detail)
