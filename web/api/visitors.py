"""A visitor's contact details over the API (docs/api.md): read them, and set name, email and attributes.

The attributes are the ones a page sets with `Deskbell.setAttributes` (desk/visitor_context.py), under the same
rules: strings, numbers and booleans kept as strings, null removes one, at most ATTRIBUTES of them.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from desk import visitor_context
from desk.db import tenant_session
from desk.models import Visitor
from desk.protocol import storable
from web.api import bp, error
from web.api.auth import caller

NAME_CHARS = 200


def visitor_json(v: Visitor) -> dict[str, Any]:
    return {
        "id": str(v.id),
        "site_id": str(v.site_id),
        "external_id": v.external_id,
        "name": v.name,
        "email": v.email,
        "attributes": dict((v.context or {}).get("attributes") or {}),
        "created_at": v.created_at.isoformat(),
        "last_seen_at": v.last_seen_at.isoformat(),
    }


@bp.get("/visitors/<uuid:visitor_id>")
def get_visitor(visitor_id: uuid.UUID) -> ResponseReturnValue:
    with tenant_session(caller().tenant_id) as session:
        visitor = session.get(Visitor, visitor_id)
        if visitor is None:
            return error(404, "not_found", "no such visitor")
        return jsonify(visitor_json(visitor))


def _name(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > NAME_CHARS or not storable(value):
        raise visitor_context.InvalidField("invalid_name", f"name must be text of at most {NAME_CHARS} characters")
    return value.strip() or None


@bp.route("/visitors/<uuid:visitor_id>", methods=["PATCH", "POST"])
def update_visitor(visitor_id: uuid.UUID) -> ResponseReturnValue:
    """{"name"?, "email"?, "attributes"?}: only the fields given change; "" or null clears name or email."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return error(400, "invalid_json", "send a JSON object with Content-Type: application/json")
    unknown = sorted(set(data) - {"name", "email", "attributes"})
    if unknown:
        return error(400, "unknown_field", f"unknown fields: {', '.join(unknown)} (name, email, attributes)")
    try:
        name = _name(data.get("name"))
        email = visitor_context.parse_email(data.get("email"))
        attributes = visitor_context.parse_attributes(data.get("attributes"))
    except visitor_context.InvalidField as exc:
        return error(400, exc.code, exc.message)
    with tenant_session(caller().tenant_id) as session:
        visitor = session.get(Visitor, visitor_id, with_for_update=True)
        if visitor is None:
            return error(404, "not_found", "no such visitor")
        if "name" in data:
            visitor.name = name
        if "email" in data:
            visitor.email = email
        if attributes:
            stored = (visitor.context or {}).get("attributes") or {}
            visitor.context = {
                **(visitor.context or {}),
                "attributes": visitor_context.merge_attributes(stored, attributes),
            }
        session.commit()
        return jsonify(visitor_json(visitor))
