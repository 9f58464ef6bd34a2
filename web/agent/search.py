"""Search over the tenant's messages and visitors, and the visitor panel's extras (docs/architecture.md, "The
console: search and the visitor panel")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.db import tenant_session
from desk.models import Conversation, Visitor
from desk.queries import search as s
from web.agent import bp

# The panel lists this many of the visitor's other conversations.
EARLIER_CONVERSATIONS = 10


@bp.get("/console/search")
def search() -> ResponseReturnValue:
    """The results page, or just the results for the search box's dropdown (an htmx request)."""
    raw = request.args.get("q", "")
    dropdown = request.headers.get("HX-Request") == "true" and request.headers.get("HX-Boosted") != "true"
    template = "agent/_search_results.html" if dropdown else "agent/search.html"
    try:
        query = s.parse(raw)
    except s.InvalidSearch as exc:
        return render_template(template, q=raw[: s.MAX_CHARS], results=None, error=exc.message), 400
    with tenant_session(current_user.tenant_id) as session:
        results = s.search(session, query)
    return render_template(template, q=query.text, results=results, error=None)


def local_time(timezone: str | None, now: datetime | None = None) -> str | None:
    """The time where the visitor is, like "14:05 (UTC+8)"; None for a missing or unknown time zone."""
    if not timezone:
        return None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    here = (now or datetime.now(UTC)).astimezone(zone)
    offset = here.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{here:%H:%M} (UTC{sign}{hours}{f':{rest:02d}' if rest else ''})"


def visitor_panel_context(session: Session, visitor: Visitor) -> dict[str, Any]:
    """What templates/agent/_visitor.html needs besides the visitor: the visitor's local time and latest
    conversations (one more than shown: the template leaves out the one on screen)."""
    conversations = session.scalars(
        select(Conversation)
        .where(Conversation.visitor_id == visitor.id)
        .order_by(Conversation.last_activity_at.desc())
        .limit(EARLIER_CONVERSATIONS + 1)
    ).all()
    return {
        "visitor_local_time": local_time((visitor.context or {}).get("timezone")),
        "visitor_conversations": list(conversations),
        "earlier_limit": EARLIER_CONVERSATIONS,
    }
