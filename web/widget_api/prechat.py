"""The widget's pre-chat form (docs/widget.md, "Pre-chat form"; docs/protocol.md, "Pre-chat form"):

    POST /api/v1/widget/prechat   {visitor_token, name, email, choice}

The session response carries `prechat` (what to ask) while a new visitor of a site with the form on has not
answered it; the answers are checked against the site's settings (desk/widget_settings.py) and kept on the visitor:
the name and email as the visitor's own, the choice as the custom attribute `pre_chat_choice` (which routing rules
match). A refused answer changes nothing. The answer carries the business hours again, as the session's `hours`:
the team the choice leads to may be closed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import visitor_context, widget_settings
from desk.db import tenant_session
from desk.models import Conversation, Site, Visitor
from desk.protocol import storable
from web.widget_api import _error, bp
from web.widget_api.offline import follow_when_away, hours_of, invalid_token, visitor_request

NAME_CHARS = visitor_context.IDENTITY_FIELDS["name"]
ANSWERED = "prechat_at"  # in visitor.context: when the visitor answered the form


def settings_of(site: Site) -> dict[str, Any] | None:
    """The site's pre-chat form when it is on, else None."""
    prechat = (site.widget or {}).get("prechat")
    return prechat if isinstance(prechat, dict) and prechat.get("enabled") else None


def form_for(session: Session, site: Site, visitor: Visitor) -> dict[str, Any] | None:
    """What the widget asks before the composer, or None: the form is off, the visitor is identified by the site,
    has answered it already, or has a conversation (a thread to go back to)."""
    prechat = settings_of(site)
    if prechat is None or visitor.external_id or (visitor.context or {}).get(ANSWERED):
        return None
    started = select(Conversation.id).where(Conversation.visitor_id == visitor.id).limit(1)
    if session.scalar(started) is not None:
        return None
    return {key: prechat.get(key) for key in ("name", "email", "question", "options")}


class Refused(ValueError):
    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


def _answer(prechat: dict[str, Any], data: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(name, email, choice) as the visitor answered, each None when not asked or left out; Refused if wrong."""
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise Refused("invalid_name", "name", "name must be a string")
    name = (name or "").strip() if prechat.get("name") in ("optional", "required") else ""
    if len(name) > NAME_CHARS or not storable(name):
        raise Refused("invalid_name", "name", f"Your name can be at most {NAME_CHARS} characters.")
    if not name and prechat.get("name") == "required":
        raise Refused("missing_name", "name", "Enter your name.")
    email = None
    if prechat.get("email") in ("optional", "required"):
        try:
            email = visitor_context.parse_email(data.get("email"))
        except visitor_context.InvalidField:
            raise Refused("invalid_email", "email", "Enter a valid email address, like name@example.com.") from None
        if email is None and prechat.get("email") == "required":
            raise Refused("missing_email", "email", "Enter your email address.")
    options = prechat.get("options") or []
    choice = data.get("choice")
    if not options:
        choice = None
    elif choice is None or choice == "":
        raise Refused("missing_choice", "choice", "Choose one of: " + ", ".join(options) + ".")
    elif not isinstance(choice, str) or choice not in options:
        raise Refused("invalid_choice", "choice", "Choose one of: " + ", ".join(options) + ".")
    return name or None, email, choice


@bp.post("/api/v1/widget/prechat")
def prechat() -> ResponseReturnValue:
    """Keep the visitor's answers to the pre-chat form; the widget shows the composer once this says `saved`."""
    data, claims = visitor_request()
    with tenant_session(claims.tenant_id) as session:
        site = session.get(Site, claims.site_id)
        visitor = session.get(Visitor, claims.visitor_id, with_for_update=True)
        if site is None or visitor is None:
            return invalid_token()
        prechat = settings_of(site)
        if prechat is None:
            return _error(409, "prechat_off", "this site does not ask anything before the chat")
        try:
            name, email, choice = _answer(prechat, data)
        except Refused as exc:
            response = jsonify(error=exc.code, message=exc.message, field=exc.field)
            response.status_code = 400
            return response
        anonymous = visitor.external_id is None  # an identified visitor keeps the name and email the site proved
        if anonymous and name:
            visitor.name = name
        if anonymous and email:
            visitor.email = email
            follow_when_away(session, visitor, email)  # replies by email once they have gone, as with the away box
        context = dict(visitor.context or {})
        if choice is not None:
            given = {widget_settings.PRECHAT_ATTRIBUTE: choice}
            context["attributes"] = visitor_context.merge_attributes(context.get("attributes") or {}, given)
        context[ANSWERED] = datetime.now(UTC).isoformat()
        visitor.context = context
        hours = hours_of(session, visitor)  # the choice may pick a team whose hours differ (routing rules)
        session.commit()
    return jsonify(status="saved", name=name, email=email, choice=choice, hours=hours)
