"""The agent console: the inbox, a conversation, replying, typing and read receipts. Live updates come from
web/edge/console.py (SSE); typing and read are in docs/architecture.md, "Typing and read receipts"."""

from __future__ import annotations

import logging
import uuid

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from desk import signals, subjects
from desk.actions.messages import Inbound
from desk.actions.receipts import do_mark_read
from desk.bus import BusUnavailable, SyncBus
from desk.db import tenant_session
from desk.models import Conversation, Message, User, Visitor
from desk.protocol import AGENT_CLIENT_PREFIX, FrameError, validate_body, validate_client_id
from desk.queries import conversations as q

bp = Blueprint("agent", __name__)
log = logging.getLogger(__name__)


@bp.before_request
@login_required
def _require_login() -> None:
    return None


def _inbox_rows() -> list[tuple[Conversation, Visitor, User | None]]:
    with tenant_session(current_user.tenant_id) as session:
        return [tuple(row) for row in session.execute(q.inbox())]  # type: ignore[misc]


def _conversation(conversation_id: uuid.UUID) -> tuple[Conversation, Visitor, list[Message]]:
    with tenant_session(current_user.tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            abort(404, "No such conversation.")
        visitor = session.get(Visitor, conversation.visitor_id)
        messages = list(session.scalars(q.conversation_latest(conversation.id)))
    return conversation, visitor, messages[::-1]


def _visitor_of(conversation_id: uuid.UUID) -> uuid.UUID:
    with tenant_session(current_user.tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            abort(404, "No such conversation.")
        return conversation.visitor_id


def _bus() -> SyncBus:
    bus = current_app.extensions["deskbell.bus"]
    if bus is None:
        raise BusUnavailable("NATS_URL is not set")
    return bus


def _composer(conversation_id: uuid.UUID, body: str = "", error: str | None = None, client_id: str = "") -> str:
    return render_template(
        "agent/_composer.html",
        conversation_id=conversation_id,
        client_id=client_id or uuid.uuid4().hex,
        body=body,
        error=error,
    )


@bp.context_processor
def _presence() -> dict[str, str]:
    with tenant_session(current_user.tenant_id) as session:
        user = session.get(User, current_user.id)
    return {"current_presence": user.presence if user else "offline"}


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("agent.inbox"))


@bp.get("/console")
def inbox() -> ResponseReturnValue:
    return render_template("agent/console.html", rows=_inbox_rows(), current=None)


@bp.get("/console/conversations")
def conversation_list() -> ResponseReturnValue:
    current = request.args.get("current")
    return render_template("agent/_conversation_list.html", rows=_inbox_rows(), current=current)


@bp.get("/console/c/<uuid:conversation_id>")
def conversation(conversation_id: uuid.UUID) -> ResponseReturnValue:
    conv, visitor, messages = _conversation(conversation_id)
    return render_template(
        "agent/console.html",
        rows=_inbox_rows(),
        current=str(conv.id),
        conversation=conv,
        visitor=visitor,
        messages=messages,
        last_seq=messages[-1].seq if messages else 0,
        composer=_composer(conv.id),
    )


@bp.post("/console/c/<uuid:conversation_id>/messages")
def reply(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """Publish an agent's reply for the store worker. The form's client_id makes a retried POST harmless."""
    body = request.form.get("body", "")
    try:
        client_id = validate_client_id(request.form.get("client_id"), current_app.config["DESKBELL"].limits)
        body = validate_body(body, current_app.config["DESKBELL"].limits)
    except FrameError as exc:
        return _composer(conversation_id, body, exc.message, request.form.get("client_id", "")), 400
    conv, _visitor, _ = _conversation(conversation_id)
    inbound = Inbound(
        visitor_id=conv.visitor_id,
        client_id=AGENT_CLIENT_PREFIX + client_id,
        body=body,
        sender="agent",
        author_id=current_user.id,
        author_name=current_user.name,
    )
    try:
        _bus().publish_durable(
            subjects.inbound(current_user.tenant_id, conv.visitor_id),
            inbound.payload(),
            subjects.inbound_msg_id(conv.visitor_id, inbound.client_id),
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
    visitor_id = _visitor_of(conversation_id)
    try:
        _bus().publish_event(
            subjects.visitor_events(current_user.tenant_id, visitor_id), signals.agent_typing(current_user.name)
        )
    except BusUnavailable:
        return "", 503
    return "", 204


@bp.post("/console/c/<uuid:conversation_id>/read")
def read(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The agent has seen the conversation up to `seq`: store it, then tell the visitor's sockets."""
    try:
        seq = int(request.form.get("seq", ""))
        if seq < 0:
            raise ValueError
    except ValueError:
        abort(400, "seq must be a non-negative integer")
    visitor_id = _visitor_of(conversation_id)
    with tenant_session(current_user.tenant_id) as session:
        moved = do_mark_read(session, conversation_id, seq)
    if moved is not None:
        try:
            _bus().publish_event(
                subjects.visitor_events(current_user.tenant_id, visitor_id), signals.read(conversation_id, moved)
            )
        except BusUnavailable as exc:
            # Stored: the visitor's next welcome carries it.
            log.warning("console: read event for conversation %s not sent: %s", conversation_id, exc)
    return "", 204


@bp.post("/console/presence")
def presence() -> ResponseReturnValue:
    value = request.form.get("presence", "")
    if value not in ("online", "away", "offline"):
        abort(400, "presence must be online, away or offline")
    with tenant_session(current_user.tenant_id) as session:
        user = session.get(User, current_user.id)
        user.presence = value
        session.commit()
    return render_template("agent/_presence.html", presence=value)
