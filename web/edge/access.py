"""Live connections end the moment access is taken away (issue 6; docs/architecture.md, "Access taken away").

Telling: `watch(publish)` hooks SQLAlchemy sessions. When a transaction that deactivates a user, raises their
`session_epoch` (signed out everywhere, a new password), or suspends or deletes a tenant commits, an
`access_lost` event (desk/signals.py) goes on `access_events(tenant)` after the commit. A hook rather than a call
in each view, so every way in (the admin's pages, the platform's, the account page, a script) is covered.

Hearing: each edge's Hub subscribes once to all tenants' access events (`listen`) and hands each one to its
connections; a console stream of that person (or of that tenant) ends, and a suspended tenant's visitor sockets
get an `unavailable` error frame and are closed. A visitor connection registers with the Hub first and then
reads its tenant's status (`suspended`), so a suspension is either heard or read, never missed in between. Like
every plain NATS event one can be lost (NATS down at that instant): a console stream then lasts until it
reconnects, where it is refused as before.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, UOWTransaction

from desk import signals, subjects
from desk.db import system_session
from desk.models import Tenant, User

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]
PENDING = "deskbell.access_lost"  # session.info key: events waiting for the commit
_publish: Publish | None = None


def _changed(obj: Any, name: str) -> bool:
    return bool(inspect(obj).attrs[name].history.added)


def _collect(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    """Before each flush, while every change is still pending (an attribute set to an SQL expression, as
    `session_epoch + 1`, is expired by its flush): what this transaction takes away."""
    found: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for obj in session.dirty:
        if isinstance(obj, User) and _changed(obj, "is_active") and not obj.is_active:
            found.append((obj.tenant_id, signals.access_lost(obj.id, "deactivated")))
        elif isinstance(obj, User) and _changed(obj, "session_epoch"):
            found.append((obj.tenant_id, signals.access_lost(obj.id, "signed_out")))
        elif isinstance(obj, Tenant) and _changed(obj, "status") and obj.status == "suspended":
            found.append((obj.id, signals.access_lost(None, "suspended")))
    for obj in session.deleted:
        if isinstance(obj, Tenant):
            found.append((obj.id, signals.access_lost(None, "deleted")))
        elif isinstance(obj, User):
            found.append((obj.tenant_id, signals.access_lost(obj.id, "deleted")))
    if found:
        session.info.setdefault(PENDING, []).extend(found)


def _after_commit(session: Session) -> None:
    pending = session.info.pop(PENDING, [])
    if not pending or _publish is None:
        return
    for tenant_id, lost in pending:
        try:
            _publish(subjects.access_events(tenant_id), lost)
        except Exception as exc:  # committed already: the connection is refused when it reconnects instead
            log.warning("access: event for tenant %s not sent (%s): %s", tenant_id, lost, exc)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def watch(publish: Publish | None) -> None:
    """Publish access events with `publish` after the commits of this process's sessions (once per process; a later
    call replaces the publisher)."""
    global _publish
    _publish = publish
    if not event.contains(Session, "before_flush", _collect):
        event.listen(Session, "before_flush", _collect)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", lambda session, _tx: _after_rollback(session))


# -- the edge side ------------------------------------------------------------------------------------------------


def heard(msg: Msg) -> tuple[uuid.UUID, uuid.UUID | None, str] | None:
    """(tenant, user or None for the whole tenant, reason) from an access event; None for anything else."""
    try:
        tenant_id = uuid.UUID(msg.subject.split(".")[2])
        lost = json.loads(msg.data)
        if lost.get("kind") != signals.ACCESS_LOST:
            return None
        return tenant_id, uuid.UUID(lost["user_id"]) if lost.get("user_id") else None, str(lost.get("reason"))
    except (ValueError, KeyError, IndexError, TypeError):
        log.warning("access: unreadable event on %s", msg.subject)
        return None


def suspended(tenant_id: uuid.UUID) -> bool:
    """Is the tenant suspended (or gone)? Read by a visitor connection after it registered with the Hub."""
    with system_session() as session:
        status = session.scalar(select(Tenant.status).where(Tenant.id == tenant_id))
    return status != "active"
