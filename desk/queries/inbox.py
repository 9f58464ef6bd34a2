"""The inbox: the console's conversation lists, their tab counts, and what the attention signal needs.

docs/architecture.md, "The console: inbox, panes and live updates". Each list page is one query served by an
index: "all" by (tenant_id, status, last_activity_at), "mine" and "unassigned" by (assignee_id, status,
last_activity_at), newest activity first, paged by a keyset cursor rather than OFFSET.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, Uuid, and_, bindparam, exists, func, or_, select
from sqlalchemy.orm import Bundle

from desk.models import CONVERSATION_STATUSES, Conversation, Message, User, Visitor

VIEWS = ("mine", "unassigned", "all")
DEFAULT_VIEW = "all"
DEFAULT_STATUS = "open"
PAGE_SIZE = 50
# Tab counts stop here ("99+"): counting a 100,000-row backlog on every live refresh is what makes inboxes slow,
# and past 99 the exact number tells an agent nothing.
COUNT_CAP = 99


class BadFilter(ValueError):
    """A list filter from a URL that names no view, status or cursor."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last row's (last_activity_at, id). Rows in one store batch share a time."""

    at: datetime
    id: uuid.UUID

    def __str__(self) -> str:
        return f"{self.at.isoformat()}|{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        try:
            at, _, id_ = text.partition("|")
            cursor = cls(datetime.fromisoformat(at), uuid.UUID(id_))
        except ValueError as exc:
            raise BadFilter(f"not a list cursor: {text[:80]!r}") from exc
        if cursor.at.tzinfo is None:
            raise BadFilter("a list cursor carries its time zone")
        return cursor


@dataclass(frozen=True)
class Filter:
    """Which list: a view, a status, and where the previous page ended (None: the first page)."""

    view: str = DEFAULT_VIEW
    status: str = DEFAULT_STATUS
    before: Cursor | None = None

    @classmethod
    def parse(cls, args: dict[str, Any]) -> Filter:
        """From a URL's query; missing means the default, anything unknown raises BadFilter."""
        view = args.get("view") or DEFAULT_VIEW
        status = args.get("status") or DEFAULT_STATUS
        if view not in VIEWS:
            raise BadFilter(f"view must be one of {', '.join(VIEWS)}")
        if status not in CONVERSATION_STATUSES:
            raise BadFilter(f"status must be one of {', '.join(CONVERSATION_STATUSES)}")
        before = args.get("before")
        return cls(view, status, Cursor.parse(before) if before else None)

    def query(self, **changes: Any) -> dict[str, str]:
        """The URL query for this filter (defaults left out, so plain URLs stay plain), with `changes` applied."""
        values = {"view": self.view, "status": self.status, **changes}
        defaults = {"view": DEFAULT_VIEW, "status": DEFAULT_STATUS}
        return {k: str(v) for k, v in values.items() if v is not None and defaults.get(k) != v}


def _in_view(view: str, me: uuid.UUID | BindParameter[Any]) -> list[ColumnElement[bool]]:
    if view == "mine":
        return [Conversation.assignee_id == me]
    if view == "unassigned":
        return [Conversation.assignee_id.is_(None)]
    return []


class _Joined(Bundle):
    """An outer-joined row's columns, or None when the join found no row (its first column, the key, is NULL)."""

    def create_row_processor(self, query: Any, procs: Any, labels: Any) -> Any:
        plain = super().create_row_processor(query, procs, labels)
        key = procs[0]
        return lambda row: None if key(row) is None else plain(row)


# Only what a list row shows, as plain named tuples with the models' attribute names: building a page's 150 ORM
# entities (instance state, identity map) cost the web process more than PostgreSQL spent on the whole page.
_ROW = Bundle(
    "conversation",
    Conversation.id,
    Conversation.status,
    Conversation.unread_count,
    Conversation.last_message_preview,
    Conversation.waiting_since,
    Conversation.last_activity_at,
    Conversation.assignee_id,
    Conversation.missed_at,
)
_VISITOR = Bundle("visitor", Visitor.id, Visitor.name, Visitor.email)
_ASSIGNEE = _Joined("assignee", User.id, User.name)


def conversation_list(where: Filter, me: uuid.UUID, limit: int = PAGE_SIZE) -> Select[tuple[Any, Any, Any]]:
    """One page of a list, newest activity first: (conversation, visitor, assignee or None) rows of the columns a
    row shows, with each row's visitor and assignee in the same query (no query per row).

    Asks for `limit + 1` rows: a row past the page means there is a next one (its cursor is the page's last row).
    """
    stmt = (
        select(_ROW, _VISITOR, _ASSIGNEE)
        .join(Visitor, Visitor.id == Conversation.visitor_id)
        .outerjoin(User, User.id == Conversation.assignee_id)
        .where(Conversation.status == where.status, *_in_view(where.view, me))
        .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if where.before is not None:
        at, id_ = where.before.at, where.before.id
        stmt = stmt.where(
            Conversation.last_activity_at <= at,  # the index's range; the OR below breaks ties by id
            or_(Conversation.last_activity_at < at, and_(Conversation.last_activity_at == at, Conversation.id < id_)),
        )
    return stmt


def _capped_count(*where: ColumnElement[bool]) -> Any:
    page = select(Conversation.id).where(Conversation.status == "open", *where).limit(COUNT_CAP + 1).subquery()
    return select(func.count()).select_from(page).scalar_subquery()


def _capped_unread(*where: ColumnElement[bool]) -> Any:
    newest = (
        select(Conversation.unread_count)
        .where(Conversation.status == "open", *where)
        .order_by(Conversation.last_activity_at.desc())
        .limit(COUNT_CAP + 1)
        .subquery()
    )
    return select(func.coalesce(func.sum(newest.c.unread_count), 0)).scalar_subquery()


def _view_counts(me: BindParameter[Any]) -> Select[tuple[int, int, int, int]]:
    mine, unassigned = _in_view("mine", me), _in_view("unassigned", me)
    return select(
        _capped_count(*mine).label("mine"),
        _capped_count(*unassigned).label("unassigned"),
        _capped_count().label("all"),
        (_capped_unread(*mine) + _capped_unread(*unassigned)).label("unread"),
    )


# Built once, the agent a parameter: its five subqueries took longer to build than PostgreSQL takes to run them.
_VIEW_COUNTS = _view_counts(bindparam("me", type_=Uuid))


def view_counts(me: uuid.UUID) -> Select[tuple[int, int, int, int]]:
    """One row: open conversations in each view (mine, unassigned, all; each at most COUNT_CAP + 1), and the
    unread visitor messages waiting on this agent (mine and unassigned; over the newest COUNT_CAP + 1 of each)."""
    return _VIEW_COUNTS.params(me=me)


def alert_facts(
    conversation_id: uuid.UUID, visitor_id: uuid.UUID, seq: int
) -> Select[tuple[uuid.UUID | None, str | None, bool]]:
    """For a visitor's message `seq`: the conversation's assignee, the visitor's name, and whether the message
    opened the conversation (no earlier message of the visitor's thread is in it; the (visitor_id, seq) index
    walks back from `seq`)."""
    earlier = exists().where(
        Message.visitor_id == visitor_id, Message.seq < seq, Message.conversation_id == conversation_id
    )
    return (
        select(Conversation.assignee_id, Visitor.name, ~earlier)
        .join(Visitor, Visitor.id == Conversation.visitor_id)
        .where(Conversation.id == conversation_id)
    )
