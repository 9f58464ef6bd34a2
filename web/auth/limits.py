"""Login attempt limits per account and per address (docs/operations.md, "Login attempts").

The counts live in PostgreSQL (`login_throttles`), each row locked while it is decided on, so any number of web
processes enforce one limit. An attempt is counted *before* its password or code is checked (`admit`), so
concurrent attempts cannot slip past the limit together; a success takes its count back (`succeeded`).

- account (`account:<email typed>`): after `delay_after` failures each next attempt must wait 1, 2, 4... seconds
  (at most `delay_max_seconds`) after the last one; an attempt sooner is refused and counts as a failure. At
  `max_failures` the account is locked for `lockout_seconds`: even the right password is refused until then.
- address (`ip:<address>`, an IPv6 address by its /64): at `ip_max_failures` failures on any accounts it is
  locked out for `lockout_seconds`. A success does not clear it (logging into one's own account between guesses
  must not help).

Failures are forgotten `window_seconds` after the last one, and when a lock ends.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from desk.db import system_session
from desk.models import LoginThrottle
from desk.settings import Logins
from web.edge import abuse

KEY_CHARS = 400
# One attempt in this many also deletes rows that hold nothing any more: sprayed emails must not fill the table.
FORGET_EVERY = 100
FORGET_BATCH = 1000


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class Refusal:
    """Why an attempt was not even checked, and for how long."""

    reason: str  # "locked" (the account), "ip_locked", "too_soon"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        if self.reason == "too_soon":
            return f"Too many attempts. Wait {_plural(self.retry_after, 'second')} before trying again."
        if self.retry_after < 60:
            wait = _plural(self.retry_after, "second")
        else:
            wait = _plural(math.ceil(self.retry_after / 60), "minute")
        return f"Too many attempts, try again in {wait}."


@dataclass(frozen=True)
class Lock:
    """A lock that an attempt started: the audit log records it."""

    scope: str  # "account" or "ip"
    until: datetime
    failures: int


def account_key(email: str) -> str:
    return ("account:" + email.strip().lower())[:KEY_CHARS]


def ip_key(address: str | None) -> str:
    """The address's row: by its network as the edge's limits group it (an IPv6 address by its /64)."""
    return ("ip:" + abuse.ip_key(address))[:KEY_CHARS]


def _row(db: Session, key: str, now: datetime, limits: Logins) -> LoginThrottle:
    """The key's row, locked for this transaction, with stale failures and an ended lock forgotten."""
    db.execute(insert(LoginThrottle).values(key=key, failures=0).on_conflict_do_nothing(index_elements=["key"]))
    row = db.scalars(
        select(LoginThrottle).where(LoginThrottle.key == key).with_for_update().execution_options(
            populate_existing=True
        )
    ).one()
    window = timedelta(seconds=limits.window_seconds)
    lock_ended = row.locked_until is not None and row.locked_until <= now
    stale = row.last_failure_at is not None and now - row.last_failure_at >= window
    if lock_ended or (row.locked_until is None and stale):
        row.failures, row.locked_until = 0, None
    return row


def _seconds(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


def _delay(failures: int, limits: Logins) -> int:
    """Seconds an attempt must wait after the last failure, when there have been `failures` of them."""
    if failures < limits.delay_after:
        return 0
    return min(2 ** (failures - limits.delay_after), limits.delay_max_seconds)


def _fail(row: LoginThrottle, now: datetime, most: int, scope: str, limits: Logins) -> Lock | None:
    row.failures += 1
    row.last_failure_at = now
    if row.failures >= most and row.locked_until is None:
        row.locked_until = now + timedelta(seconds=limits.lockout_seconds)
        return Lock(scope, row.locked_until, row.failures)
    return None


def forget_stale(limits: Logins) -> int:
    """Delete up to FORGET_BATCH rows with no lock in force and no failure within the window; returns how many.
    Rows another attempt holds are skipped."""
    with system_session() as db:
        now = db.scalar(select(func.now()))
        assert now is not None
        before = now - timedelta(seconds=limits.window_seconds)
        stale = (
            select(LoginThrottle.key)
            .where(
                func.coalesce(LoginThrottle.locked_until, LoginThrottle.last_failure_at, before) <= now,
                func.coalesce(LoginThrottle.last_failure_at, before) <= before,
            )
            .limit(FORGET_BATCH)
            .with_for_update(skip_locked=True)
        )
        gone = db.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(stale.scalar_subquery())))
        db.commit()
        return int(gone.rowcount or 0)


def admit(email: str, address: str | None, limits: Logins) -> tuple[Refusal | None, list[Lock]]:
    """Decide whether an attempt may be checked, counting it as a failure for now. Returns the refusal (None:
    go on and check it) and the locks this attempt started (only when refused too soon at the limit)."""
    with system_session() as db:
        now = db.scalar(select(func.now()))
        assert now is not None
        ip = _row(db, ip_key(address), now, limits)
        account = _row(db, account_key(email), now, limits)
        refusal: Refusal | None = None
        locks: list[Lock] = []
        if ip.locked_until is not None:
            refusal = Refusal("ip_locked", _seconds(ip.locked_until, now))
        elif ip.failures >= limits.ip_max_failures:  # at the limit with attempts still being checked
            refusal = Refusal("ip_locked", limits.lockout_seconds)
        elif account.locked_until is not None:
            refusal = Refusal("locked", _seconds(account.locked_until, now))
        elif account.failures >= limits.max_failures:
            refusal = Refusal("locked", limits.lockout_seconds)
        else:
            wait = _delay(account.failures, limits)
            last = account.last_failure_at
            if wait and last is not None and now < last + timedelta(seconds=wait):
                # Too soon counts as a failure: hammering keeps an attacker waiting and reaches the lock.
                locks = [
                    lock
                    for lock in (
                        _fail(account, now, limits.max_failures, "account", limits),
                        _fail(ip, now, limits.ip_max_failures, "ip", limits),
                    )
                    if lock
                ]
                retry = _delay(account.failures, limits)
                refusal = Refusal("too_soon", retry) if not locks else Refusal("locked", limits.lockout_seconds)
            else:
                account.failures += 1
                ip.failures += 1
                account.last_failure_at = ip.last_failure_at = now
        db.commit()
    if random.randrange(FORGET_EVERY) == 0:
        forget_stale(limits)
    return refusal, locks


def failed(email: str, address: str | None, limits: Logins) -> list[Lock]:
    """The admitted attempt was wrong: it stays counted, and starts a lock if it reached a limit."""
    with system_session() as db:
        now = db.scalar(select(func.now()))
        assert now is not None
        locks = []
        for key, most, scope in (  # the address's row first, as everywhere: no two attempts wait on each other
            (ip_key(address), limits.ip_max_failures, "ip"),
            (account_key(email), limits.max_failures, "account"),
        ):
            row = _row(db, key, now, limits)
            row.last_failure_at = now
            if row.failures >= most and row.locked_until is None:
                row.locked_until = now + timedelta(seconds=limits.lockout_seconds)
                locks.append(Lock(scope, row.locked_until, row.failures))
        db.commit()
        return locks


def succeeded(email: str, address: str | None, limits: Logins, *, complete: bool) -> None:
    """The admitted attempt was right: its count is taken back. `complete` (logged in, not only past the password
    with a code still to come): the account's failures are forgotten too."""
    with system_session() as db:
        now = db.scalar(select(func.now()))
        assert now is not None
        ip = _row(db, ip_key(address), now, limits)
        account = _row(db, account_key(email), now, limits)
        account.failures = 0 if complete else max(account.failures - 1, 0)
        ip.failures = max(ip.failures - 1, 0)
        db.commit()
