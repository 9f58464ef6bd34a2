"""The audit log (docs/admin.md, "Audit log"): one function appends an entry, one function says what changed.

Entries are only ever added: nothing in the application updates or deletes an `audit_log` row. An entry of an
administrative change carries the changed fields only, before and after; secrets and password hashes never.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from desk.models import AuditLog, User

# Field names whose values never go in the log: a change to one is recorded as "changed", without the value.
SECRET_FIELDS = frozenset(
    {"password", "password_hash", "identity_secret", "secret", "secret_hash", "secret_encrypted", "token", "token_hash"}
)
REDACTED = "(changed)"
USER_AGENT_CHARS = 400


@dataclass(frozen=True)
class Client:
    """Who made the request: the address (after trusted proxies) and the browser's User-Agent."""

    ip: str | None = None
    user_agent: str | None = None


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields whose values differ, as (before, after); secret fields appear redacted on both sides."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for key in dict.fromkeys([*before, *after]):
        if before.get(key) == after.get(key):
            continue
        if key in SECRET_FIELDS:
            old[key], new[key] = REDACTED, REDACTED
        else:
            old[key], new[key] = _plain(before.get(key)), _plain(after.get(key))
    return old, new


def snapshot(row: object, fields: Iterable[str]) -> dict[str, Any]:
    """A row's fields as plain JSON values, to pass to `changes` before and after an edit."""
    return {name: _plain(getattr(row, name)) for name in fields}


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def record(
    session: Session,
    *,
    tenant_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    action: str,
    client: Client | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    **detail: Any,
) -> AuditLog:
    """Add an entry to `session` (the caller commits it with the change it describes, so both or neither stay).

    `before`/`after` are reduced to the fields that changed; `detail` holds anything else worth keeping
    (the object's id and name, the email a login tried). Secret fields are dropped from `detail`.
    """
    body = {k: _plain(v) for k, v in detail.items() if k not in SECRET_FIELDS}
    if before is not None or after is not None:
        body["before"], body["after"] = changes(before or {}, after or {})
    client = client or Client()
    entry = AuditLog(
        tenant_id=tenant_id,
        actor_id=actor_id,
        action=action,
        detail=body,
        ip=client.ip,
        user_agent=(client.user_agent or "")[:USER_AGENT_CHARS] or None,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class Search:
    """What the admin's audit page filters by; empty fields match everything."""

    action: str = ""  # a prefix: "login" matches login.success and login.failure
    actor: str = ""  # part of the actor's email (or, for logins, of the email tried)
    since: date | None = None
    until: date | None = None  # inclusive


def search(tenant_id: uuid.UUID, found: Search, before_id: int | None = None) -> Select[Any]:
    """The tenant's entries matching `found`, newest first, as (AuditLog, actor email) rows.

    `audit_log` is not a TenantScoped table (installation events have no tenant), so the tenant filter is here.
    """
    query = (
        select(AuditLog, User.email)
        .outerjoin(User, User.id == AuditLog.actor_id)
        .where(AuditLog.tenant_id == tenant_id)
        .order_by(AuditLog.id.desc())
    )
    if found.action:
        query = query.where(AuditLog.action.startswith(found.action.strip(), autoescape=True))
    if found.actor:
        pattern = f"%{found.actor.strip().lower()}%"
        query = query.where(
            or_(func.lower(User.email).like(pattern), func.lower(AuditLog.detail["email"].astext).like(pattern))
        )
    if found.since:
        query = query.where(AuditLog.created_at >= datetime.combine(found.since, time.min, UTC))
    if found.until:
        query = query.where(AuditLog.created_at < datetime.combine(found.until + timedelta(days=1), time.min, UTC))
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return query
