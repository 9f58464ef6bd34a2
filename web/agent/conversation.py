"""One conversation: its page, replying, typing and read receipts (docs/architecture.md, "Typing and read
receipts")."""

from __future__ import annotations

import logging
import uuid

from flask import abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from desk import signals, subjects
from desk.actions.messages import Inbound
from desk.actions.receipts import do_mark_read
from desk.bus import BusUnavailable
from desk.db import tenant_session
from desk.models import Conversation, Message, Visitor
from desk.protocol import AGENT_CLIENT_PREFIX, FrameError, validate_body, validate_client_id
from desk.queries import conversations as q
from web.agent import bp, bus, visitor_of
from web.agent.inbox import inbox_rows

log = logging.getLogger(__name__)


def _conversation(conversation_id: uuid.UUID) -> tuple[Conversation, Visitor, list[Message]]:
    with tenant_session(current_user.tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            abort(404, "No such conversation.")
        visitor = session.get(Visitor, conversation.visitor_id)
        messages = list(session.scalars(q.conversation_latest(conversation.id)))
    return conversation, visitor, messages[::-1]


def _composer(conversation_id: uuid.UUID, body: str = "", error: str | None = None, client_id: str = "") -> str:
    return render_template(
        "agent/_composer.html",
        conversation_id=conversation_id,
        client_id=client_id or uuid.uuid4().hex,
        body=body,
        error=error,
    )


@bp.get("/console/c/<uuid:conversation_id>")
def conversation(conversation_id: uuid.UUID) -> ResponseReturnValue:
    conv, visitor, messages = _conversation(conversation_id)
    return render_template(
        "agent/console.html",
        rows=inbox_rows(),
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
        bus().publish_durable(
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
    """The agent has seen the conversation up to `seq`: store it, then tell the visitor's sockets."""
    try:
        seq = int(request.form.get("seq", ""))
        if seq < 0:
            raise ValueError
    except ValueError:
        abort(400, "seq must be a non-negative integer")
    visitor_id = visitor_of(conversation_id)
    with tenant_session(current_user.tenant_id) as session:
        moved = do_mark_read(session, conversation_id, seq)
    if moved is not None:
        try:
            bus().publish_event(
                subjects.visitor_events(current_user.tenant_id, visitor_id), signals.read(conversation_id, moved)
            )
        except BusUnavailable as exc:
            # Stored: the visitor's next welcome carries it.
            log.warning("console: read event for conversation %s not sent: %s", conversation_id, exc)
    return "", 204
