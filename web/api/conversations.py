"""Conversations over the API (docs/api.md): list them, read one and its messages, post a message into it.

A posted message takes the console's path: it is published to `desk.in.<tenant>.<visitor>` with a Nats-Msg-Id
from its client_id, and the store worker stores it once, gives it its seq and sends it to the visitor's widget
(docs/architecture.md, steps 2-5). The answer is 202: the message is in JetStream, not yet in PostgreSQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from datetime import datetime
from typing import Any

from flask import Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from desk import subjects
from desk.actions import conversations as act
from desk.actions.messages import Inbound
from desk.bus import BusUnavailable
from desk.db import tenant_session
from desk.models import CONVERSATION_STATUSES, Conversation, Message, Visitor
from desk.protocol import AGENT_CLIENT_PREFIX, FrameError, validate_body, validate_client_id
from desk.settings import Settings
from web.api import bp, error
from web.api.auth import caller

log = logging.getLogger(__name__)

# Marks a client_id as the API's, inside the agents' namespace that visitors may not use (desk/protocol.py).
API_CLIENT_PREFIX = AGENT_CLIENT_PREFIX + "api:"
SENDERS = ("bot", "agent")
AUTHOR_CHARS = 200
DEFAULT_PAGE = 50


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "visitor_id": str(c.visitor_id),
        "status": c.status,
        "assignee_id": str(c.assignee_id) if c.assignee_id else None,
        "team_id": str(c.team_id) if c.team_id else None,
        "labels": list(c.labels),
        "unread_count": c.unread_count,
        "last_message_preview": c.last_message_preview,
        "created_at": _iso(c.created_at),
        "last_activity_at": _iso(c.last_activity_at),
        "resolved_at": _iso(c.resolved_at),
    }


def message_json(m: Message) -> dict[str, Any]:
    client_id = m.client_id[len(API_CLIENT_PREFIX) :] if m.client_id.startswith(API_CLIENT_PREFIX) else None
    return {
        "id": m.id,
        "conversation_id": str(m.conversation_id),
        "seq": m.seq,
        "sender": m.sender,
        "author": m.author_name,
        "body": m.body,
        "client_id": client_id,  # the API's own client_id, for matching a post to its stored message
        "created_at": _iso(m.created_at),
    }


def _limit(config: Settings) -> int:
    raw = request.args.get("limit", "")
    if raw == "":
        return min(DEFAULT_PAGE, config.api.page_max)
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"limit must be a whole number from 1 to {config.api.page_max}")
    return min(int(raw), config.api.page_max)


def _encode_cursor(c: Conversation) -> str:
    raw = json.dumps([c.created_at.isoformat(), str(c.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError("cursor is not one this API gave out") from exc


def _conversation(session: Session, conversation_id: uuid.UUID) -> Conversation | None:
    return session.get(Conversation, conversation_id)  # tenant_session: another tenant's id is not found


def _not_found() -> Response:
    return error(404, "not_found", "no such conversation")


@bp.get("/conversations")
def list_conversations() -> ResponseReturnValue:
    """Newest first (by when they started), `limit` at a time; `next_cursor` fetches the page after."""
    config: Settings = current_app.config["DESKBELL"]
    status = request.args.get("status", "")
    if status and status not in CONVERSATION_STATUSES:
        return error(400, "invalid_status", f"status must be one of {', '.join(CONVERSATION_STATUSES)}")
    try:
        limit = _limit(config)
        after = _decode_cursor(request.args["cursor"]) if request.args.get("cursor") else None
    except ValueError as exc:
        return error(400, "invalid_parameter", str(exc))
    query = select(Conversation).order_by(Conversation.created_at.desc(), Conversation.id.desc()).limit(limit + 1)
    if status:
        query = query.where(Conversation.status == status)
    if after is not None:
        created, ident = after
        query = query.where(
            or_(Conversation.created_at < created, and_(Conversation.created_at == created, Conversation.id < ident))
        )
    with tenant_session(caller().tenant_id) as session:
        found = list(session.scalars(query))
    page, more = found[:limit], len(found) > limit
    return jsonify(
        conversations=[conversation_json(c) for c in page],
        next_cursor=_encode_cursor(page[-1]) if more else None,
    )


@bp.get("/conversations/<uuid:conversation_id>")
def get_conversation(conversation_id: uuid.UUID) -> ResponseReturnValue:
    with tenant_session(caller().tenant_id) as session:
        conversation = _conversation(session, conversation_id)
        if conversation is None:
            return _not_found()
        return jsonify(conversation_json(conversation))


@bp.get("/conversations/<uuid:conversation_id>/messages")
def list_messages(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """The conversation's messages with seq > after_seq, oldest first; `next_after_seq` continues."""
    config: Settings = current_app.config["DESKBELL"]
    raw = request.args.get("after_seq", "0") or "0"
    try:
        if not raw.isdigit():
            raise ValueError("after_seq must be a whole number, 0 or more")
        limit = _limit(config)
    except ValueError as exc:
        return error(400, "invalid_parameter", str(exc))
    with tenant_session(caller().tenant_id) as session:
        if _conversation(session, conversation_id) is None:
            return _not_found()
        found = list(
            session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.seq > int(raw))
                .order_by(Message.seq)
                .limit(limit + 1)
            )
        )
    page, more = found[:limit], len(found) > limit
    return jsonify(messages=[message_json(m) for m in page], next_after_seq=page[-1].seq if more else None)


@bp.post("/conversations/<uuid:conversation_id>/messages")
def post_message(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """{"body", "client_id"?, "sender"? ("bot", the default, or "agent"), "author_name"? (default: the key's
    name)}. Posting again with the same client_id stores the message once."""
    config: Settings = current_app.config["DESKBELL"]
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return error(400, "invalid_json", "send a JSON object with Content-Type: application/json")
    sender = data.get("sender", "bot")
    author = data.get("author_name") or caller().name
    if sender not in SENDERS:
        return error(400, "invalid_sender", f"sender must be one of {', '.join(SENDERS)}")
    if not isinstance(author, str) or len(author) > AUTHOR_CHARS or not author.strip():
        return error(400, "invalid_author_name", f"author_name must be text of at most {AUTHOR_CHARS} characters")
    try:
        body = validate_body(data.get("body"), config.limits)
        client_id = validate_client_id(data.get("client_id") or uuid.uuid4().hex, config.limits)
        validate_body(author, config.limits)  # storable text
    except FrameError as exc:
        return error(400, exc.code, exc.message)
    with tenant_session(caller().tenant_id) as session:
        conversation = _conversation(session, conversation_id)
        if conversation is None:
            return _not_found()
        visitor_id = conversation.visitor_id
    inbound = Inbound(
        visitor_id=visitor_id, client_id=API_CLIENT_PREFIX + client_id, body=body, sender=sender, author_name=author
    )
    bus = current_app.extensions["deskbell.bus"]
    try:
        if bus is None:
            raise BusUnavailable("NATS_URL is not set")
        bus.publish_durable(
            subjects.inbound(caller().tenant_id, visitor_id),
            inbound.payload(),
            subjects.inbound_msg_id(visitor_id, inbound.client_id),
        )
    except BusUnavailable:
        return error(503, "unavailable", "the message service is unavailable: post it again with the same client_id")
    response = jsonify(status="accepted", client_id=client_id, visitor_id=str(visitor_id))
    response.status_code = 202
    return response


@bp.post("/conversations/<uuid:conversation_id>/resolve")
def resolve(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """Mark it resolved, as an agent's Resolve does; the timeline names the key's creator as who did it (the audit
    log has the call). Resolving a resolved conversation changes nothing."""
    actor = caller().created_by_id
    if actor is None:
        return error(409, "no_actor", "the person who made this key is gone: an admin should make a new key")
    with tenant_session(caller().tenant_id) as session:
        try:
            change = act.do_resolve(session, conversation_id, actor)
        except act.NotFound:
            return _not_found()
        except act.Forbidden:
            return error(409, "no_actor", "the person who made this key can no longer act: make a new key")
        payload = change.signal()
        body = conversation_json(change.conversation)
    if payload is not None:
        bus = current_app.extensions["deskbell.bus"]
        try:
            if bus is not None:
                bus.publish_event(subjects.agent_events(caller().tenant_id), payload)
        except BusUnavailable as exc:  # stored already: the consoles see it at their next refresh
            log.warning("api: resolve of conversation %s not announced: %s", conversation_id, exc)
    return jsonify(body)


@bp.get("/visitors/<uuid:visitor_id>/conversations")
def visitor_conversations(visitor_id: uuid.UUID) -> ResponseReturnValue:
    """A visitor's conversations, newest first (at most DESKBELL_API_PAGE_MAX)."""
    config: Settings = current_app.config["DESKBELL"]
    with tenant_session(caller().tenant_id) as session:
        if session.get(Visitor, visitor_id) is None:
            return error(404, "not_found", "no such visitor")
        found = session.scalars(
            select(Conversation)
            .where(Conversation.visitor_id == visitor_id)
            .order_by(Conversation.created_at.desc())
            .limit(config.api.page_max)
        )
        return jsonify(conversations=[conversation_json(c) for c in found])
