"""Presence: the agent sets online / away / offline, every open console tab sends a heartbeat, and the roster
shows who of the team is there (docs/architecture.md, "The console: presence and the sweeper").

How an away the sweeper set is told from one the agent chose is in desk/actions/presence.py. Every change is
published as `signals.presence_changed` on the tenant's agent events; the consoles re-fetch the roster on it.
Logging in and out (web/auth) changes presence too: the receivers of flask-login's signals below stamp the
login as a fresh heartbeat (an agent's last one may be hours old, and the sweeper must not turn them away
before their console's first) and publish both changes.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user, user_logged_in, user_logged_out
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import signals, subjects
from desk.actions.presence import do_heartbeat, do_set_presence
from desk.bus import BusUnavailable
from desk.db import tenant_session
from desk.models import PRESENCE, User
from web.agent import bp, bus

log = logging.getLogger(__name__)


def publish_presence(tenant_id: uuid.UUID, user_id: uuid.UUID, presence: str) -> None:
    """Tell the tenant's consoles; stored already, so a lost event only leaves a roster stale until the next."""
    try:
        bus().publish_event(subjects.agent_events(tenant_id), signals.presence_changed(user_id, presence))
    except BusUnavailable as exc:
        log.warning("console: presence of %s not published: %s", user_id, exc)


def roster_agents(session: Session) -> list[User]:
    """The tenant's active agents, by name: what `agent/_roster.html` shows (pass them as `agents`)."""
    return list(session.scalars(select(User).where(User.is_active).order_by(User.name, User.email)))


@bp.post("/console/presence")
def presence() -> ResponseReturnValue:
    """The agent's own menu (`agent/_presence.html`): a choice made by hand, which heartbeats never undo."""
    value = request.form.get("presence", "")
    if value not in PRESENCE:
        abort(400, "presence must be online, away or offline")
    with tenant_session(current_user.tenant_id) as session:
        changed = do_set_presence(session, current_user.id, value)
    if changed:
        publish_presence(current_user.tenant_id, current_user.id, value)
    return render_template("agent/_presence.html", presence=value)


@bp.post("/console/presence/heartbeat")
def heartbeat() -> ResponseReturnValue:
    """A console tab is open (web/static/presence.js). Brings back an agent the sweeper turned away; answers
    with the agent's presence, so every open tab's menu shows a change made in another."""
    with tenant_session(current_user.tenant_id) as session:
        value, back = do_heartbeat(session, current_user.id)
    if value is None:
        abort(404, "No such agent.")
    if back:
        publish_presence(current_user.tenant_id, current_user.id, value)
    return jsonify(presence=value)


@bp.get("/console/roster")
def roster() -> ResponseReturnValue:
    """The tenant's agents and their presence, for the console's roster."""
    with tenant_session(current_user.tenant_id) as session:
        agents = roster_agents(session)
    return render_template("agent/_roster.html", agents=agents)


@user_logged_in.connect
def _logged_in(_app: Flask, user: object, **_: object) -> None:
    """Logging in sets the agent online (web/auth does too, just after) and counts as a heartbeat."""
    tenant_id, user_id = user.tenant_id, user.id  # type: ignore[attr-defined]  (web.auth.SessionUser)
    with tenant_session(tenant_id) as session:
        changed = do_set_presence(session, user_id, "online")
    if changed:
        publish_presence(tenant_id, user_id, "online")


@user_logged_out.connect
def _logged_out(_app: Flask, user: object, **_: object) -> None:
    """web/auth has set the agent offline by now; the consoles hear of it."""
    if getattr(user, "is_authenticated", False):
        publish_presence(user.tenant_id, user.id, "offline")  # type: ignore[attr-defined]
