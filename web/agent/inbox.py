"""The inbox: the page around the panes, and the conversation lists."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from desk.db import tenant_session
from desk.models import Conversation, User, Visitor
from desk.queries import conversations as q
from web.agent import bp


def inbox_rows() -> list[tuple[Conversation, Visitor, User | None]]:
    with tenant_session(current_user.tenant_id) as session:
        return [tuple(row) for row in session.execute(q.inbox())]  # type: ignore[misc]


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("agent.inbox"))


@bp.get("/console")
def inbox() -> ResponseReturnValue:
    return render_template("agent/console.html", rows=inbox_rows(), current=None)


@bp.get("/console/conversations")
def conversation_list() -> ResponseReturnValue:
    current = request.args.get("current")
    return render_template("agent/_conversation_list.html", rows=inbox_rows(), current=current)
