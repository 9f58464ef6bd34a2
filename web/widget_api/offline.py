"""The widget's email side (docs/protocol.md, "Offline messages and transcripts"):

    POST /api/v1/widget/offline-message   {visitor_token, email, message, client_id}
    POST /api/v1/widget/transcript        {visitor_token, email, request_id}

An offline message is the visitor's message like any other (JetStream, then the store worker: it opens a
conversation in the inbox), and from then on agents' replies to the visitor are also emailed to them
(desk/mail_outbox.py). A transcript request queues the visitor's latest conversation for the mailer.
`hours_of` is what the session response says about business hours: those of the team routing would pick
(desk/actions/rules.py), in desk/mail_hours.py's shape.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from desk import mail_outbox, subjects, tokens, visitor_context
from desk.actions.admin import NotFound
from desk.actions.messages import Inbound
from desk.actions.rules import UNREAD, hours_for_visitor
from desk.bus import BusUnavailable
from desk.db import tenant_session
from desk.models import Visitor
from desk.protocol import FrameError, validate_body
from desk.settings import Settings
from web.widget_api import _error, bp

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
OFFLINE_PREFIX = "offline:"


def hours_of(
    session: Session, visitor: Visitor, tenant_settings: Any = UNREAD, default_schedule: Any = UNREAD
) -> dict[str, Any]:
    """The business hours as the session response carries them, open or when they are back: those of the team the
    routing rules would give this visitor's next conversation (its page, language, attributes such as the pre-chat
    choice), else the tenant's (desk/actions/rules.py, `hours_for_visitor`)."""
    return hours_for_visitor(session, visitor, tenant_settings, default_schedule).as_json()


def follow_when_away(session: Session, visitor: Visitor, email: str) -> None:
    """The email a visitor left in the chat: agents' replies reach it once they have gone (desk/mail_outbox.py)."""
    mail_outbox.follow_when_away(session, visitor, email)


def _visitor(data: dict[str, Any]) -> tokens.VisitorClaims | None:
    config: Settings = current_app.config["DESKBELL"]
    token = data.get("visitor_token")
    if not isinstance(token, str) or not token:
        return None
    return tokens.verify(config.secret_key, token, config.limits.visitor_token_days * 86400)


def visitor_request() -> tuple[dict[str, Any], tokens.VisitorClaims]:
    """The request's JSON object and the visitor its `visitor_token` names; else the request ends here with 400
    or 401 and the reason."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(_error(400, "invalid_json", "body must be a JSON object"))
    claims = _visitor(data)
    if claims is None:
        abort(invalid_token())
    return data, claims


def invalid_token() -> Response:
    return _error(401, "invalid_token", "a valid visitor token is required")


def _email(data: dict[str, Any]) -> str | None:
    try:
        return visitor_context.parse_email(data.get("email"))
    except visitor_context.InvalidField:
        return None


@bp.post("/api/v1/widget/offline-message")
def offline_message() -> ResponseReturnValue:
    """Leave a message outside business hours: stored as the visitor's message, answered by email."""
    config: Settings = current_app.config["DESKBELL"]
    data, claims = visitor_request()
    email = _email(data)
    if email is None:
        return _error(400, "invalid_email", "Enter your email address, like name@example.com, so we can reply.")
    try:
        body = validate_body(data.get("message"), config.limits)
    except FrameError as exc:
        message = "Write your message." if exc.code == "invalid_body" else exc.message
        return _error(413 if exc.code == "message_too_long" else 400, exc.code, message)
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not _REQUEST_ID.fullmatch(client_id):
        return _error(400, "invalid_client_id", "client_id must be 8 to 64 letters, digits, - or _")
    with tenant_session(claims.tenant_id) as session:
        try:
            mail_outbox.do_follow_by_email(session, claims.visitor_id, email, "offline")
        except NotFound:
            return invalid_token()
    inbound = Inbound(visitor_id=claims.visitor_id, client_id=OFFLINE_PREFIX + client_id, body=body)
    bus = current_app.extensions.get("deskbell.bus")
    try:
        if bus is None:
            raise BusUnavailable("NATS_URL is not set")
        bus.publish_durable(
            subjects.inbound(claims.tenant_id, claims.visitor_id),
            inbound.payload(),
            subjects.inbound_msg_id(claims.visitor_id, inbound.client_id),
        )
    except BusUnavailable:
        # Not accepted: the widget keeps the form filled in and sends it again (same client_id: stored once).
        return _error(503, "unavailable", "Your message could not be sent just now. Please try again.")
    return jsonify(status="accepted", email=email), 202


@bp.post("/api/v1/widget/transcript")
def transcript() -> ResponseReturnValue:
    """Email the visitor their latest conversation ("Email me this conversation" in the widget's menu)."""
    data, claims = visitor_request()
    email = _email(data)
    if email is None:
        return _error(400, "invalid_email", "Enter your email address, like name@example.com.")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        return _error(400, "invalid_request_id", "request_id must be 8 to 64 letters, digits, - or _")
    config: Settings = current_app.config["DESKBELL"]
    with tenant_session(claims.tenant_id) as session:
        try:
            mail_outbox.do_queue_transcript(
                session, claims.visitor_id, email, request_id, config.mail.transcripts_per_hour
            )
        except NotFound as exc:
            return _error(404, "no_conversation", str(exc))
        except mail_outbox.TooMany:
            limit = config.mail.transcripts_per_hour
            response = _error(429, "too_many_transcripts", f"You can ask for {limit} emails an hour. Try again later.")
            response.headers["Retry-After"] = "3600"
            return response
    return jsonify(status="queued", email=email), 202
