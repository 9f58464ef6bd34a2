"""Conversation actions: assign, transfer, resolve, reopen, snooze, labels, private notes.

The rules are desk/actions/conversations.py's; these routes read the form, run one action, publish
`signals.conversation_changed` on the tenant's agent events after the commit (docs/architecture.md, "The console:
actions and notes"), and answer with the refreshed action bar (templates/agent/_actions.html) for htmx, or a
redirect for a plain form post. A refused action answers 400/404/409 with the bar and the reason in it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from desk import subjects
from desk.actions import conversations as act
from desk.bus import BusUnavailable
from desk.db import tenant_session
from desk.models import Conversation, ConversationEvent, Team, User
from desk.settings import Limits
from web.agent import bp, bus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaneActions:
    """What the action bar offers: the tenant's active agents (with their presence) and teams."""

    agents: list[User]
    teams: list[Team]
    team: Team | None
    assignee: User | None
    # The conversation's newest event when the bar was read; what the bar shows is at least that new. canned.js
    # never lets a bar replace one of a higher version (an answer that crossed a newer one on the way).
    version: int = 0
    label_limit: int = act.LABELS_PER_CONVERSATION
    label_chars: int = act.LABEL_CHARS


def pane_context(session: Session, conversation: Conversation) -> dict[str, Any]:
    """What templates/agent/_actions.html needs besides the conversation. Reads the conversation again, in place
    (the caller's object, when it belongs to `session`), after its version."""
    version = session.scalar(
        select(func.coalesce(func.max(ConversationEvent.id), 0)).where(
            ConversationEvent.conversation_id == conversation.id
        )
    )
    fresh = session.scalar(
        select(Conversation).where(Conversation.id == conversation.id).execution_options(populate_existing=True)
    )
    conversation = fresh or conversation
    agents = list(session.scalars(select(User).where(User.is_active).order_by(User.name, User.email)))
    teams = list(session.scalars(select(Team).order_by(Team.name)))
    team = next((t for t in teams if t.id == conversation.team_id), None)
    assignee = next((a for a in agents if a.id == conversation.assignee_id), None)
    if assignee is None and conversation.assignee_id is not None:  # deactivated since
        assignee = session.get(User, conversation.assignee_id)
    return {"actions": PaneActions(agents=agents, teams=teams, team=team, assignee=assignee, version=version)}


@bp.app_template_filter("when")
def _when(value: datetime | str | None) -> str:
    """A moment as "Tue 12 Jan, 09:00 UTC" (canned.js shows <time class="local"> in the agent's own zone)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%a %d %b, %H:%M UTC")


def _limits() -> Limits:
    return current_app.config["DESKBELL"].limits


def _htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def render_actions(session: Session, conversation: Conversation | None, error: str | None = None) -> str:
    """The action bar of one conversation, as the pane header includes it."""
    if conversation is None:
        return render_template("agent/_actions.html", conversation=None, action_error=error)
    context = pane_context(session, conversation)
    return render_template(
        "agent/_actions.html",
        conversation=conversation,
        action_error=error,
        **context,
    )


def _publish(change: act.Change) -> None:
    """Tell the tenant's consoles. The change is stored already: a lost event only delays their refresh."""
    payload = change.signal()
    if payload is None:
        return
    try:
        bus().publish_event(subjects.agent_events(current_user.tenant_id), payload)
    except BusUnavailable as exc:
        log.warning(
            "console: %s of conversation %s not announced: %s", payload["change"], payload["conversation_id"], exc
        )


def _act(conversation_id: uuid.UUID, action: Callable[[Session], act.Change]) -> ResponseReturnValue:
    with tenant_session(current_user.tenant_id) as session:
        try:
            change = action(session)
        except act.ActionError as exc:
            session.rollback()
            conversation = session.scalar(
                select(Conversation).where(Conversation.id == conversation_id).execution_options(populate_existing=True)
            )
            status = 404 if conversation is None else exc.status
            return render_actions(session, conversation, exc.message), status
        _publish(change)
        if not _htmx():
            return redirect(url_for("agent.conversation", conversation_id=conversation_id), 303)
        return render_actions(session, change.conversation)


# -- form fields ----------------------------------------------------------------------------------------------------


def _optional_id(name: str, what: str) -> uuid.UUID | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise act.Invalid(f"No such {what}.") from None


def _expected() -> uuid.UUID | None | act.Unchecked:
    """The assignee the form showed, when it says (the "take" race: whoever comes second is told who won)."""
    if "expected" not in request.form:
        return act.UNCHECKED
    return _optional_id("expected", "agent")


def _zone() -> ZoneInfo:
    try:
        return ZoneInfo(request.form.get("tz") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _snooze_until() -> datetime:
    zone, now = _zone(), datetime.now(UTC)
    preset = request.form.get("preset", "")
    if preset:
        return act.snooze_preset(preset, now, zone)
    raw = request.form.get("until", "").strip()
    if not raw:
        raise act.Invalid("Choose when the conversation should come back.")
    try:
        until = datetime.fromisoformat(raw)
    except ValueError:
        raise act.Invalid("That snooze time is not a date and time.") from None
    # A datetime-local field has no zone: it is the agent's wall clock (canned.js sends the browser's zone).
    return until if until.tzinfo else until.replace(tzinfo=zone)


def _transfer_target() -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The form's `to`: "agent:<id>" or "team:<id>"."""
    kind, _, raw = request.form.get("to", "").partition(":")
    if kind not in ("agent", "team") or not raw:
        raise act.Invalid("Choose an agent or a team to transfer to.")
    try:
        target = uuid.UUID(raw)
    except ValueError:
        raise act.Invalid(f"No such {kind}.") from None
    return (target, None) if kind == "agent" else (None, target)


# -- routes ---------------------------------------------------------------------------------------------------------


@bp.post("/console/c/<uuid:conversation_id>/assign")
def assign(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """Assign to an agent (`agent_id`, empty: unassign); "Assign to me" sends the agent's own id."""

    def action(session: Session) -> act.Change:
        agent_id = _optional_id("agent_id", "agent")
        return act.do_assign(session, conversation_id, current_user.id, agent_id, _expected())

    return _act(conversation_id, action)


@bp.post("/console/c/<uuid:conversation_id>/team")
def team(conversation_id: uuid.UUID) -> ResponseReturnValue:
    def action(session: Session) -> act.Change:
        return act.do_assign_team(session, conversation_id, current_user.id, _optional_id("team_id", "team"))

    return _act(conversation_id, action)


@bp.post("/console/c/<uuid:conversation_id>/transfer")
def transfer(conversation_id: uuid.UUID) -> ResponseReturnValue:
    def action(session: Session) -> act.Change:
        agent_id, team_id = _transfer_target()
        note = request.form.get("note", "")
        return act.do_transfer(
            session, conversation_id, current_user.id, agent_id=agent_id, team_id=team_id, note=note, limits=_limits()
        )

    return _act(conversation_id, action)


@bp.post("/console/c/<uuid:conversation_id>/resolve")
def resolve(conversation_id: uuid.UUID) -> ResponseReturnValue:
    return _act(conversation_id, lambda session: act.do_resolve(session, conversation_id, current_user.id))


@bp.post("/console/c/<uuid:conversation_id>/reopen")
def reopen(conversation_id: uuid.UUID) -> ResponseReturnValue:
    return _act(conversation_id, lambda session: act.do_reopen(session, conversation_id, current_user.id))


@bp.post("/console/c/<uuid:conversation_id>/pending")
def pending(conversation_id: uuid.UUID) -> ResponseReturnValue:
    return _act(conversation_id, lambda session: act.do_set_pending(session, conversation_id, current_user.id))


@bp.post("/console/c/<uuid:conversation_id>/snooze")
def snooze(conversation_id: uuid.UUID) -> ResponseReturnValue:
    return _act(
        conversation_id, lambda session: act.do_snooze(session, conversation_id, current_user.id, _snooze_until())
    )


@bp.post("/console/c/<uuid:conversation_id>/labels")
def labels(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """`add=<label>` or `remove=<label>` (the chip's button)."""

    def action(session: Session) -> act.Change:
        if "remove" in request.form:
            return act.do_remove_label(session, conversation_id, current_user.id, request.form["remove"])
        return act.do_add_label(session, conversation_id, current_user.id, request.form.get("add", ""))

    return _act(conversation_id, action)


@bp.post("/console/c/<uuid:conversation_id>/notes")
def notes(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """A private note from the composer in note mode: stored as an event, never published to the visitor's
    thread. Answers with the composer (still in note mode), empty after a note, with the draft after a refusal."""
    body, client_id = request.form.get("body", ""), request.form.get("client_id", "")[:64]

    def composer(body: str = "", error: str | None = None, client_id: str = "") -> str:
        return render_template(
            "agent/_composer.html",
            conversation_id=conversation_id,
            client_id=client_id or uuid.uuid4().hex,
            body=body,
            error=error,
            mode="note",
        )

    with tenant_session(current_user.tenant_id) as session:
        try:
            change = act.do_add_note(session, conversation_id, current_user.id, body, client_id or None, _limits())
        except act.ActionError as exc:
            return composer(body, exc.message, client_id), exc.status
    _publish(change)
    if not _htmx():
        return redirect(url_for("agent.conversation", conversation_id=conversation_id), 303)
    return composer()
