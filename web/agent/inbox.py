"""The inbox: the console page around the panes, and the conversation lists Mine / Unassigned / All
(docs/architecture.md, "The console: inbox, panes and live updates")."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import abort, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from desk.db import tenant_session
from desk.models import CONVERSATION_STATUSES, Visitor
from desk.queries import inbox as q
from web.agent import bp
from web.agent.presence import roster_agents

ANY_ID = uuid.UUID(int=0)


@dataclass(frozen=True)
class InboxList:
    """One page of a list, the cursor of the next page (if any), and the tabs' counts."""

    where: q.Filter
    rows: list[tuple[Any, Any, Any]]  # (conversation, visitor, assignee or None): q.conversation_list's rows
    more: q.Cursor | None
    counts: dict[str, int]  # mine, unassigned, all (open ones, capped), unread (waiting on this agent)
    statuses: tuple[str, ...] = CONVERSATION_STATUSES


def inbox_list(session: Session, where: q.Filter) -> InboxList:
    """Two queries whatever the page holds: the rows with their visitors and assignees, and the counts."""
    rows: list[Any] = session.execute(q.conversation_list(where, current_user.id)).all()
    more = None
    if len(rows) > q.PAGE_SIZE:
        rows = rows[: q.PAGE_SIZE]
        last = rows[-1][0]
        more = q.Cursor(last.last_activity_at, last.id)
    counts = session.execute(q.view_counts(current_user.id)).one()._asdict()
    return InboxList(where, rows, more, counts)


def list_filter() -> q.Filter:
    try:
        return q.Filter.parse(request.args)
    except q.BadFilter as exc:
        abort(400, str(exc))


def console_page(session: Session, where: q.Filter, **pane: Any) -> str:
    """The whole console: the list for `where`, and the pane given by `pane`'s context, if any."""
    # The roster shows the same active agents, in the same order, as the pane's action bar has read already.
    agents = pane["actions"].agents if "actions" in pane else roster_agents(session)
    return render_template("agent/console.html", inbox=inbox_list(session, where), agents=agents, pane=pane, **pane)


@bp.app_template_filter("conversation_href")
def conversation_href(conversation_id: uuid.UUID) -> str:
    """url_for('agent.conversation', ...) for a list's rows, built once per request: url_for was a row's main cost."""
    prefix = g.get("conversation_href")
    if prefix is None:
        prefix = g.conversation_href = url_for("agent.conversation", conversation_id=ANY_ID).removesuffix(str(ANY_ID))
    return prefix + str(conversation_id)


@bp.app_template_filter("visitor_name")
def visitor_name(visitor: Visitor | Any) -> str:
    """A Visitor, or a list row's visitor (its id, name and email)."""
    return visitor.name or visitor.email or f"Visitor {str(visitor.id)[:8]}"


@bp.app_template_filter("waited")
def waited(since: datetime | None, now: datetime | None = None) -> str:
    """How long a visitor has waited, compactly: "45s", "12m", "3h", "2d" (console.js keeps it current)."""
    if since is None:
        return ""
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@bp.app_template_filter("capped")
def capped(count: int) -> str:
    return f"{q.COUNT_CAP}+" if count > q.COUNT_CAP else str(count)


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("agent.inbox"))


@bp.get("/console")
def inbox() -> ResponseReturnValue:
    with tenant_session(current_user.tenant_id) as session:
        return console_page(session, list_filter())


@bp.get("/console/conversations")
def conversation_list() -> ResponseReturnValue:
    """The list fragment (tabs, filter, rows) for htmx; with `before`, only the next page's rows."""
    where = list_filter()
    with tenant_session(current_user.tenant_id) as session:
        found = inbox_list(session, where)
    return render_template("agent/_conversation_list.html", inbox=found, rows_only=where.before is not None)
