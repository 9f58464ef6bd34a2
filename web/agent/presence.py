"""Presence: the agent sets online / away / offline."""

from __future__ import annotations

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from desk.db import tenant_session
from desk.models import User
from web.agent import bp


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


@bp.get("/console/roster")
def roster() -> ResponseReturnValue:
    """The tenant's agents and their presence, for the console's roster."""
    with tenant_session(current_user.tenant_id) as session:
        agents = list(session.scalars(select(User).where(User.is_active).order_by(User.name)))
    return render_template("agent/_roster.html", agents=agents)
