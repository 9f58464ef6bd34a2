"""One conversation's pane: its page (a deep link), the pane and its parts as fragments, replying, typing and
read receipts (docs/architecture.md, "The console: inbox, panes and live updates" and "Typing and read
receipts")."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import signals, subjects
from desk.actions.messages import Inbound
from desk.actions.receipts import do_mark_read
from desk.actions.routing import do_mark_opened
from desk.bus import BusUnavailable
from desk.db import tenant_session
from desk.models import Conversation, Visitor
from desk.protocol import AGENT_CLIENT_PREFIX, FrameError, validate_body, validate_client_id
from desk.queries.timeline import timeline as timeline_entries
from web.agent import actions, bp, bus, search, visitor_of
from web.agent.inbox import console_page, list_filter

log = logging.getLogger(__name__)


def header_context(session: Session, conversation_id: uuid.UUID) -> dict[str, Any]:
    """What agent/_pane_header.html needs: the conversation, its visitor and assignee, and the actions' extras."""
    found = session.execute(
        select(Conversation, Visitor)
        .join(Visitor, Visitor.id == Conversation.visitor_id)
        .where(Conversation.id == conversation_id)
    ).first()
    if found is None:
        abort(404, "No such conversation.")
    conversation, visitor = found
    extras = actions.pane_context(session, conversation)
    return {
        "conversation": conversation,
        "visitor": visitor,
        "assignee": extras["actions"].assignee,  # read with the agents, after the conversation's latest version
        **extras,
    }


def pane_context(session: Session, conversation_id: uuid.UUID) -> dict[str, Any]:
    """What agent/_pane.html needs: the header's, the timeline, an empty composer, the visitor panel's extras."""
    context = header_context(session, conversation_id)
    return {
        **context,
        "entries": timeline_entries(session, conversation_id),
        "conversation_id": conversation_id,
        "client_id": uuid.uuid4().hex,
        "body": "",
        "error": None,
        **search.visitor_panel_context(session, context["visitor"]),
    }


def _composer(conversation_id: uuid.UUID, body: str = "", error: str | None = None, client_id: str = "") -> str:
    return render_template(
        "agent/_composer.html",
        conversation_id=conversation_id,
        client_id=client_id or uuid.uuid4().hex,
        body=body,
        error=error,
    )


def _publish_change(conversation_id: uuid.UUID, change: str) -> None:
    """Tell the tenant's consoles (lists, panes); stored already, so a lost event only delays their refresh."""
    try:
        bus().publish_event(
            subjects.agent_events(current_user.tenant_id), signals.conversation_changed(conversation_id, change)
        )
    except BusUnavailable as exc:
        log.warning("console: %s of conversation %s not published: %s", change, conversation_id, exc)


@bp.get("/console/c/<uuid:conversation_id>")
def conversation(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The console with this conversation open: a deep link (search results, bookmarks, a reload)."""
    with tenant_session(current_user.tenant_id) as session:
        return console_page(session, list_filter(), **pane_context(session, conversation_id))


@bp.get("/console/c/<uuid:conversation_id>/pane")
def pane(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The pane alone, for opening the conversation as another tab of the console."""
    with tenant_session(current_user.tenant_id) as session:
        return render_template("agent/_pane.html", **pane_context(session, conversation_id))


@bp.get("/console/c/<uuid:conversation_id>/header")
def header(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The pane's header (status, assignee, actions), re-fetched when the conversation changes."""
    with tenant_session(current_user.tenant_id) as session:
        return render_template("agent/_pane_header.html", **header_context(session, conversation_id))


@bp.get("/console/c/<uuid:conversation_id>/timeline")
def timeline(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The timeline entries after the pane's cursors (its highest message seq and event id): how an open pane
    catches up on a live signal, and after its stream reconnects."""
    try:
        after_seq = int(request.args.get("after_seq") or 0)
        after_event = int(request.args.get("after_event") or 0)
        if after_seq < 0 or after_event < 0:
            raise ValueError
    except ValueError:
        abort(400, "after_seq and after_event must be non-negative integers")
    with tenant_session(current_user.tenant_id) as session:
        if session.get(Conversation, conversation_id) is None:
            abort(404, "No such conversation.")
        entries = timeline_entries(session, conversation_id, after_seq=after_seq, after_event=after_event)
    return render_template("agent/_timeline.html", entries=entries)


@bp.post("/console/c/<uuid:conversation_id>/messages")
def reply(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """Publish an agent's reply for the store worker. The form's client_id makes a retried POST harmless."""
    body = request.form.get("body", "")
    try:
        client_id = validate_client_id(request.form.get("client_id"), current_app.config["DESKBELL"].limits)
        body = validate_body(body, current_app.config["DESKBELL"].limits)
    except FrameError as exc:
        return _composer(conversation_id, body, exc.message, request.form.get("client_id", "")), 400
    visitor_id = visitor_of(conversation_id)
    inbound = Inbound(
        visitor_id=visitor_id,
        client_id=AGENT_CLIENT_PREFIX + client_id,
        body=body,
        sender="agent",
        author_id=current_user.id,
        author_name=current_user.name,
    )
    try:
        bus().publish_durable(
            subjects.inbound(current_user.tenant_id, visitor_id),
            inbound.payload(),
            subjects.inbound_msg_id(visitor_id, inbound.client_id),
        )
    except BusUnavailable:
        error = "Not sent: the message service is unavailable. Your draft is kept; try again."
        return _composer(conversation_id, body, error, client_id), 503
    if request.headers.get("HX-Request"):
        return _composer(conversation_id)
    return redirect(url_for("agent.conversation", conversation_id=conversation_id), 303)


@bp.post("/console/c/<uuid:conversation_id>/typing")
def typing(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The agent is typing: a plain NATS event for the visitor's sockets, not stored. console.js sends it at
    most every 2 s while the agent types."""
    visitor_id = visitor_of(conversation_id)
    try:
        bus().publish_event(
            subjects.visitor_events(current_user.tenant_id, visitor_id), signals.agent_typing(current_user.name)
        )
    except BusUnavailable:
        return "", 503
    return "", 204


@bp.post("/console/c/<uuid:conversation_id>/read")
def read(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The agent has seen the conversation up to `seq`: store it, then tell the visitor's sockets, and the
    consoles (the conversation's unread count changed)."""
    try:
        seq = int(request.form.get("seq", ""))
        if seq < 0:
            raise ValueError
    except ValueError:
        abort(400, "seq must be a non-negative integer")
    visitor_id = visitor_of(conversation_id)
    with tenant_session(current_user.tenant_id) as session:
        moved = do_mark_read(session, conversation_id, seq)
        do_mark_opened(session, conversation_id, current_user.id)  # routing keeps it with them (issue 8)
    if moved is not None:
        try:
            bus().publish_event(
                subjects.visitor_events(current_user.tenant_id, visitor_id), signals.read(conversation_id, moved)
            )
        except BusUnavailable as exc:
            # Stored: the visitor's next welcome carries it.
            log.warning("console: read event for conversation %s not sent: %s", conversation_id, exc)
        _publish_change(conversation_id, "read")
    return "", 204
