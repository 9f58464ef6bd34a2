"""Storing messages: idempotent by (visitor, client_id), seq assigned under the visitor row's lock.

docs/architecture.md, step 4. The worker calls do_store_messages() for a batch and publishes what it returns.
It is written in SQLAlchemy Core on the model's tables, not the ORM: it runs for every batch the store worker
takes, and the ORM's unit of work cost about 4 ms of CPU a batch, most of the worker's time (docs/benchmarks.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnClause,
    DateTime,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from desk.actions.routing import do_reopen_idle
from desk.db import TenantError
from desk.models import Conversation, Message, Visitor

PREVIEW_CHARS = 140


@dataclass(frozen=True)
class Inbound:
    """A message waiting to be stored, as the edge or Flask published it."""

    visitor_id: uuid.UUID
    client_id: str
    body: str
    sender: str = "visitor"
    author_id: uuid.UUID | None = None
    author_name: str | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Inbound:
        author = data.get("author_id")
        return cls(
            visitor_id=uuid.UUID(data["visitor_id"]),
            client_id=data["client_id"],
            body=data["body"],
            sender=data.get("sender", "visitor"),
            author_id=uuid.UUID(author) if author else None,
            author_name=data.get("author_name"),
        )

    def payload(self) -> dict[str, Any]:
        return {
            "visitor_id": str(self.visitor_id),
            "client_id": self.client_id,
            "body": self.body,
            "sender": self.sender,
            "author_id": str(self.author_id) if self.author_id else None,
            "author_name": self.author_name,
        }


@dataclass(frozen=True)
class Stored:
    message: Message
    created: bool
    new_conversation: bool
    # What a console needs to decide whether the message is worth a sound (web/edge/console.py), known here at
    # no cost: the conversation's assignee and the visitor's name when it was stored.
    assignee_id: uuid.UUID | None = None
    visitor_name: str | None = None

    def alert(self) -> dict[str, Any]:
        """The alert facts the agents' copy of the event carries."""
        return {
            "new": self.new_conversation,
            "assignee_id": str(self.assignee_id) if self.assignee_id else None,
            "name": self.visitor_name,
        }


def as_event(message: Message) -> dict[str, Any]:
    """The one shape of a stored message on the event bus (visitor frames and console fragments derive from it)."""
    return {
        "id": message.id,
        "tenant_id": str(message.tenant_id),
        "visitor_id": str(message.visitor_id),
        "conversation_id": str(message.conversation_id),
        "seq": message.seq,
        "client_id": message.client_id,
        "sender": message.sender,
        "author": message.author_name,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
    }


_V, _C, _M = Visitor.__table__, Conversation.__table__, Message.__table__
_TENANT = bindparam("b_tenant", type_=_V.c.tenant_id.type)
_VISITORS = bindparam("b_visitors", type_=ARRAY(_V.c.id.type))
_NOW = bindparam("b_now", type_=DateTime(timezone=True))

# Module-level statements, compiled once; arrays (`= ANY(:array)`, `unnest`) keep one SQL text whatever the batch's
# size, so psycopg prepares each once per connection. Each names the tenant, as the ORM session's criteria would
# (desk/db.py), and row-level security holds them to it as it holds every statement.
_LOCK_VISITORS = (
    select(_V.c.id, _V.c.last_seq, _V.c.name)
    .where(_V.c.tenant_id == _TENANT, _V.c.id == any_(_VISITORS))
    .order_by(_V.c.id)
    .with_for_update()
)


def _rows(name: str, *columns: ColumnClause[Any]) -> Any:
    """`unnest(:name_<column>, ...) AS name(column, ...)`: a batch's rows as one table, one array parameter per
    column, so one statement of one SQL text joins, inserts or updates them all (one round trip, not one per row).
    `_arrays` gives its parameters."""
    # A length would be a cast, and a cast to varchar(n) cuts longer text where the column refuses it.
    unbounded = [String() if isinstance(c.type, String) else c.type for c in columns]
    arrays = (bindparam(f"{name}_{c.name}", type_=ARRAY(t)) for c, t in zip(columns, unbounded, strict=True))
    return func.unnest(*arrays).table_valued(*columns).render_derived(name)


def _arrays(table: Any, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of a `_rows(...)` table for `rows` (dicts by its column names): one list per column."""
    return {f"{table.name}_{c.name}": [row[c.name] for row in rows] for c in table.c}


# The messages of the batch stored before (a redelivery), each looked up by its (visitor, client_id) index: LIMIT 1
# keeps the lookup a nested loop whatever the statistics say (a hash join over the tenant's messages grew with
# them while a new tenant's statistics were stale).
_ASKED = _rows("asked", column("visitor_id", _M.c.visitor_id.type), column("client_id", String))
_FOUND = (
    select(_M)
    .where(_M.c.visitor_id == _ASKED.c.visitor_id, _M.c.client_id == _ASKED.c.client_id, _M.c.tenant_id == _TENANT)
    .limit(1)
    .lateral("found")
)
_EXISTING = select(_FOUND).select_from(_ASKED).join(_FOUND, true())
# Per visitor, the newest conversation that is not resolved and the newest that is: the first takes the
# message; the second, when it is newer and was resolved for being idle, may be reopened for it.
_RESOLVED = (_C.c.status == "resolved").label("resolved")
_CONVERSATIONS = (
    select(_C.c.id, _C.c.visitor_id, _C.c.assignee_id, _C.c.auto_resolved_at, _C.c.created_at, _RESOLVED)
    .where(_C.c.tenant_id == _TENANT, _C.c.visitor_id == any_(_VISITORS))
    .ext(distinct_on(_C.c.visitor_id, _RESOLVED))
    .order_by(_C.c.visitor_id, _RESOLVED, _C.c.created_at.desc())
)
# The batch's writes, one statement (data-modifying CTEs: each runs once, whether or not it is referenced): the
# conversations it starts, the messages (RETURNING their ids), the visitors' last_seq and last_seen_at, and the
# conversations it adds to. A message may reference a conversation started by the same statement: foreign keys
# are checked at its end.
_STARTED = _rows(
    "started",
    column("id", _C.c.id.type),
    column("visitor_id", _C.c.visitor_id.type),
    column("unread_count", Integer),
    column("waiting_since", DateTime(timezone=True)),
    column("last_message_preview", _C.c.last_message_preview.type),
)
_START = insert(_C).from_select(
    [*(c.name for c in _STARTED.c), "tenant_id", "status", "last_activity_at"],
    select(*_STARTED.c, _TENANT, literal("open", String), _NOW),
    include_defaults=False,
)
_NEW = _rows(
    "new",
    *(column(c.name, c.type) for c in _M.columns if c.name not in ("id", "tenant_id", "created_at")),
)
_INSERT = (
    insert(_M)
    .from_select(
        [*(c.name for c in _NEW.c), "tenant_id", "created_at"], select(*_NEW.c, _TENANT, _NOW), include_defaults=False
    )
    .returning(_M.c.id, _M.c.visitor_id, _M.c.seq)
    .cte("inserted")
)
_SEEN = _rows(
    "seen",
    column("visitor_id", _V.c.id.type),
    column("last_seq", Integer),
    column("last_seen_at", DateTime(timezone=True)),
)
_ADVANCE = (
    update(_V)
    .where(_V.c.tenant_id == _TENANT, _V.c.id == _SEEN.c.visitor_id)
    .values(last_seq=_SEEN.c.last_seq, last_seen_at=func.coalesce(_SEEN.c.last_seen_at, _V.c.last_seen_at))
)
_TOUCHED = _rows(
    "touched",
    column("conversation_id", _C.c.id.type),
    column("preview", _C.c.last_message_preview.type),
    column("unread", Integer),
    column("waiting", String),
    column("wakes", Boolean),
)
# A visitor's message to a pending or snoozed conversation wakes it: it needs the team again.
_WAKES = and_(_TOUCHED.c.wakes, or_(_C.c.status == "pending", _C.c.status == "snoozed"))
_TOUCH = (
    update(_C)
    .where(_C.c.tenant_id == _TENANT, _C.c.id == _TOUCHED.c.conversation_id)
    .values(
        last_activity_at=_NOW,
        last_message_preview=_TOUCHED.c.preview,
        # Added, not set: a read receipt (desk/actions/receipts.py) recounts it under the row's lock meanwhile.
        unread_count=_C.c.unread_count + _TOUCHED.c.unread,
        waiting_since=case(
            (_TOUCHED.c.waiting == "clear", null()),
            (_TOUCHED.c.waiting == "reset", _NOW),
            (_TOUCHED.c.waiting == "since", func.coalesce(_C.c.waiting_since, _NOW)),
            else_=_C.c.waiting_since,
        ),
        status=case((_WAKES, "open"), else_=_C.c.status),
        snoozed_until=case((_WAKES, null()), else_=_C.c.snoozed_until),
    )
)
_WRITE = select(_INSERT.c.id, _INSERT.c.visitor_id, _INSERT.c.seq).add_cte(
    _START.cte("started_conversations"), _ADVANCE.cte("advanced"), _TOUCH.cte("touched_conversations")
)


@dataclass
class _Change:
    """What a batch does to one conversation. `waiting` says what becomes of waiting_since: kept, set if unset
    (visitor messages), cleared (an agent answered), or set anew (a visitor wrote after the agent's answer)."""

    preview: str = ""
    unread: int = 0
    waiting: str = "keep"
    wakes: bool = False

    def add(self, item: Inbound) -> None:
        self.preview = item.body[:PREVIEW_CHARS]
        if item.sender == "visitor":
            self.unread += 1
            self.wakes = True
            self.waiting = {"keep": "since", "clear": "reset"}.get(self.waiting, self.waiting)
        elif item.sender == "agent":
            self.waiting = "clear"


def do_store_messages(session: Session, batch: list[Inbound]) -> list[Stored | None]:
    """Store a batch in one transaction; a message already stored is returned again, not stored twice.

    Returns one entry per input, None for a message whose visitor does not exist in this tenant (the caller
    drops it). A message joins the visitor's conversation that is not resolved (a pending or snoozed one is
    opened again by a visitor message), else starts a new one. Locks every visitor row of the batch in id
    order first, so concurrent workers never deadlock and a visitor's seqs are assigned one at a time.
    Does not commit. Runs on the session's connection and transaction (tenant-scoped, desk/db.py) in Core, after
    flushing what the caller changed: rows the caller loaded before do not see what this writes.
    """
    tenant_id = session.info.get("tenant_id")
    if tenant_id is None:
        raise TenantError("messages are stored in a tenant_session()")
    session.flush()
    conn = session.connection()
    visitor_ids = sorted({item.visitor_id for item in batch})
    scope = {"b_tenant": tenant_id, "b_visitors": visitor_ids}
    visitors = {row.id: row for row in conn.execute(_LOCK_VISITORS, scope)}
    asked = _arrays(_ASKED, [{"visitor_id": i.visitor_id, "client_id": i.client_id} for i in batch])
    existing = {
        (row.visitor_id, row.client_id): Message(**row._mapping) for row in conn.execute(_EXISTING, scope | asked)
    }
    open_rows: dict[uuid.UUID, Row[Any]] = {}
    newest: dict[uuid.UUID, Row[Any]] = {}
    for row in conn.execute(_CONVERSATIONS, scope):
        if not row.resolved:
            open_rows[row.visitor_id] = row
        if row.visitor_id not in newest or row.created_at > newest[row.visitor_id].created_at:
            newest[row.visitor_id] = row
    # A conversation the sweeper closed for being idle comes back with the visitor's next message (issue 8).
    writing = {i.visitor_id for i in batch if i.sender == "visitor" and (i.visitor_id, i.client_id) not in existing}
    idle = [row.id for v, row in newest.items() if v in writing and row.resolved and row.auto_resolved_at]
    reopened = set(do_reopen_idle(session, idle))
    open_rows |= {v: row for v, row in newest.items() if row.id in reopened}

    now = datetime.now(UTC)
    seqs = {v: row.last_seq for v, row in visitors.items()}
    conversation_of: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID | None]] = {
        v: (row.id, row.assignee_id) for v, row in open_rows.items()
    }
    started: dict[uuid.UUID, uuid.UUID] = {}  # new conversation -> its visitor
    changes: dict[uuid.UUID, _Change] = {}
    created: list[Message] = []
    results: list[Stored | None] = []
    for item in batch:
        visitor = visitors.get(item.visitor_id)
        if visitor is None:
            results.append(None)
            continue
        key = (item.visitor_id, item.client_id)
        if key in existing:
            known = conversation_of.get(item.visitor_id)
            assignee = known[1] if known is not None and known[0] == existing[key].conversation_id else None
            results.append(Stored(existing[key], False, False, assignee, visitor.name))
            continue
        new_conversation = item.visitor_id not in conversation_of
        if new_conversation:
            conversation_of[item.visitor_id] = (uuid.uuid4(), None)
            started[conversation_of[item.visitor_id][0]] = item.visitor_id
        conversation_id, assignee_id = conversation_of[item.visitor_id]
        seqs[item.visitor_id] += 1
        message = Message(
            tenant_id=tenant_id,
            visitor_id=item.visitor_id,
            conversation_id=conversation_id,
            seq=seqs[item.visitor_id],
            client_id=item.client_id,
            sender=item.sender,
            author_id=item.author_id,
            author_name=item.author_name,
            body=item.body,
            created_at=now,
        )
        changes.setdefault(conversation_id, _Change()).add(item)
        existing[key] = message
        created.append(message)
        results.append(Stored(message, True, new_conversation, assignee_id, visitor.name))
    if not created:
        return results

    started_rows = [
        {
            "id": conversation_id,
            "visitor_id": visitor_id,
            "unread_count": changes[conversation_id].unread,
            "waiting_since": now if changes[conversation_id].waiting in ("since", "reset") else None,
            "last_message_preview": changes[conversation_id].preview,
        }
        for conversation_id, visitor_id in started.items()
    ]
    new_rows = [{c.name: getattr(m, c.name) for c in _NEW.c} for m in created]
    seen_rows = [
        {"visitor_id": v, "last_seq": seqs[v], "last_seen_at": now if v in writing else None}
        for v in sorted({m.visitor_id for m in created})
    ]
    touched_rows = [
        {"conversation_id": c, "preview": ch.preview, "unread": ch.unread, "waiting": ch.waiting, "wakes": ch.wakes}
        for c, ch in changes.items()
        if c not in started
    ]
    params = (
        {"b_tenant": tenant_id, "b_now": now}
        | _arrays(_STARTED, started_rows)
        | _arrays(_NEW, new_rows)
        | _arrays(_SEEN, seen_rows)
        | _arrays(_TOUCHED, touched_rows)
    )
    ids = {(row.visitor_id, row.seq): row.id for row in conn.execute(_WRITE, params)}
    for message in created:
        message.id = ids[(message.visitor_id, message.seq)]
    return results
