"""The agent console, one module per part (docs/architecture.md, "The console"):

- inbox.py         the conversation lists and the page around them
- conversation.py  one conversation's pane: thread, replying, typing, read receipts
- actions.py       assign, transfer, resolve, reopen, snooze, labels, private notes
- canned.py        saved replies: managing them and finding them for the composer's `/shortcut`
- search.py        full-text search over the tenant's messages and visitors
- presence.py      online / away / offline, the roster, and the heartbeat behind the grace period

Live updates come from web/edge/console.py (SSE).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, current_app, g
from flask_login import current_user, login_required

from desk.bus import BusUnavailable, SyncBus
from desk.db import tenant_session
from desk.models import Conversation

bp = Blueprint("agent", __name__)


@bp.before_request
@login_required
def _require_login() -> None:
    return None


@bp.context_processor
def _presence() -> dict[str, str]:
    return {"current_presence": g.get("presence", "offline")}  # read with the user (web/__init__.py)


def bus() -> SyncBus:
    """The web process's NATS connection; BusUnavailable when there is none."""
    found = current_app.extensions["deskbell.bus"]
    if found is None:
        raise BusUnavailable("NATS_URL is not set")
    return found


def visitor_of(conversation_id: uuid.UUID) -> uuid.UUID:
    """The visitor of one of the agent's tenant's conversations; 404 for any other id."""
    with tenant_session(current_user.tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            abort(404, "No such conversation.")
        return conversation.visitor_id


from web.agent import actions, attachments, canned, conversation, inbox, presence, search  # noqa: E402,F401  (routes)
