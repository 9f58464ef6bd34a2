"""People: the list with role, status, teams and capacity; invitations by link (shown once); role changes and
ownership transfer; deactivation; signing someone out everywhere and resetting their two-factor (docs/admin.md,
"Agents and roles", "Account security")."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from flask import current_app, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.accounts import revoke_sessions
from desk.actions import agents as act
from desk.actions.admin import ROLE_NAMES, ActionError, Forbidden, NotFound, record
from desk.models import Invite, Team, TeamMember, Tenant, User
from desk.settings import Settings
from web.admin import admin_session, bp, change, page, parse_id
from web.admin.roles import client, requires, saas


def _context(session: Session, actor: User) -> dict[str, Any]:
    people = list(session.scalars(select(User).order_by(User.is_active.desc(), User.name, User.email)))
    teams = list(session.scalars(select(Team).order_by(Team.name)))
    names = {t.id: t.name for t in teams}
    member_of: dict[Any, list[Any]] = defaultdict(list)
    for m in session.scalars(select(TeamMember)):
        member_of[m.user_id].append(m.team_id)
    now = datetime.now(UTC)
    invites = list(
        session.scalars(
            select(Invite)
            .where(Invite.accepted_at.is_(None), Invite.expires_at > now)
            .order_by(Invite.created_at.desc())
        )
    )
    tenant = session.get(Tenant, actor.tenant_id)
    assert tenant is not None
    return {
        "people": people,
        "teams": teams,
        "team_names": names,
        "member_of": member_of,
        "invites": invites,
        "me": actor,
        "invitable": act.invitable_roles(actor, tenant, saas()),
        "role_names": ROLE_NAMES,
        "max_chats": act.MAX_CHATS,
    }


def _page(session: Session, actor: User, status: int = 200, **extra: Any) -> ResponseReturnValue:
    return page(
        "admin/agents.html", status, **{"error": None, "invite_link": None, **_context(session, actor), **extra}
    )


def invite_link(token: str) -> str:
    config: Settings = current_app.config["DESKBELL"]
    base = config.public_url or request.host_url.rstrip("/")
    return base + url_for("auth.accept_invite", token=token)


@bp.get("/agents")
@requires("admin", "owner")
def agents() -> ResponseReturnValue:
    with admin_session() as (session, actor):
        return _page(session, actor)


@bp.post("/agents/invite")
@requires("admin", "owner")
def invite() -> ResponseReturnValue:
    with admin_session() as (session, actor):
        tenant = session.get(Tenant, actor.tenant_id)
        assert tenant is not None
        try:
            created, token = act.do_create_invite(
                session,
                actor,
                client(),
                request.form.get("email", ""),
                request.form.get("role", "agent"),
                act.invitable_roles(actor, tenant, saas()),
            )
        except ActionError as exc:
            return _page(session, actor, exc.status, error=exc.message)
        # Shown in this answer only: the token is stored hashed.
        return _page(session, actor, invite_link=invite_link(token), invited=created)


@bp.post("/invites/<invite_id>/revoke")
@requires("admin", "owner")
def revoke_invite(invite_id: str) -> ResponseReturnValue:
    return _change(lambda s, a: act.do_revoke_invite(s, a, client(), parse_id(invite_id)), "Invitation revoked.")


def _change(do: Any, message: str) -> ResponseReturnValue:
    return change(do, message, "admin.agents", lambda s, actor, exc: _page(s, actor, exc.status, error=exc.message))


@bp.post("/agents/<user_id>")
@requires("admin", "owner")
def update_agent(user_id: str) -> ResponseReturnValue:
    form = {**request.form.to_dict(), "team_ids": request.form.getlist("team_ids")}
    return _change(lambda s, a: act.do_update_agent(s, a, client(), parse_id(user_id), form), "Saved.")


@bp.post("/agents/<user_id>/role")
@requires("admin", "owner")
def set_role(user_id: str) -> ResponseReturnValue:
    role = request.form.get("role", "")
    return _change(lambda s, a: act.do_set_role(s, a, client(), parse_id(user_id), role), "Role changed.")


def _deactivate(session: Session, actor: User, user_id: Any) -> None:
    target = act.do_set_active(session, actor, client(), user_id, False)
    # Also ended for good: reactivating them later must not bring the old sessions back.
    revoke_sessions(session, target)
    session.commit()


@bp.post("/agents/<user_id>/deactivate")
@requires("admin", "owner")
def deactivate(user_id: str) -> ResponseReturnValue:
    return _change(
        lambda s, a: _deactivate(s, a, parse_id(user_id)),
        "Deactivated: their sessions have ended and they cannot log in.",
    )


def _target(session: Session, actor: User, user_id: Any) -> User:
    """Someone the actor may manage: in the tenant (the tenant session sees no one else), not an owner unless the
    actor is one."""
    target = session.get(User, user_id, with_for_update=True)
    if target is None:
        raise NotFound("No such agent.")
    if target.role == "owner" and actor.role != "owner":
        raise Forbidden("Only an owner can change an owner.")
    return target


def do_sign_out_everywhere(session: Session, actor: User, user_id: Any) -> None:
    """Every session of the user ends at its next request, their console's live stream at its next reconnect."""
    target = _target(session, actor, user_id)
    epoch = revoke_sessions(session, target)
    record(session, actor, client(), "agent.sign_out", user_id=target.id, email=target.email, epoch=epoch)
    session.commit()


def do_reset_two_factor(session: Session, actor: User, user_id: Any) -> None:
    """For someone who lost their phone and recovery codes: two-factor off, sessions ended; they set it up again
    (at their next login, if the tenant requires it)."""
    target = _target(session, actor, user_id)
    if target.id == actor.id:
        raise Forbidden("Turn your own two-factor off from your account page.")
    target.totp_secret_encrypted = None
    target.totp_enabled_at = None
    target.totp_last_step = None
    target.recovery_codes = []
    revoke_sessions(session, target)
    record(session, actor, client(), "agent.two_factor_reset", user_id=target.id, email=target.email)
    session.commit()


@bp.post("/agents/<user_id>/sign-out")
@requires("admin", "owner")
def sign_out_everywhere(user_id: str) -> ResponseReturnValue:
    return _change(
        lambda s, a: do_sign_out_everywhere(s, a, parse_id(user_id)),
        "Signed out everywhere: each of their open sessions ends at its next request.",
    )


@bp.post("/agents/<user_id>/two-factor/reset")
@requires("admin", "owner")
def reset_two_factor(user_id: str) -> ResponseReturnValue:
    return _change(
        lambda s, a: do_reset_two_factor(s, a, parse_id(user_id)),
        "Two-factor reset: they log in with their password and set it up again.",
    )


@bp.post("/agents/<user_id>/reactivate")
@requires("admin", "owner")
def reactivate(user_id: str) -> ResponseReturnValue:
    return _change(lambda s, a: act.do_set_active(s, a, client(), parse_id(user_id), True), "Reactivated.")


@bp.post("/agents/<user_id>/transfer-ownership")
@requires("owner")
def transfer_ownership(user_id: str) -> ResponseReturnValue:
    return _change(
        lambda s, a: act.do_transfer_ownership(s, a, client(), parse_id(user_id)),
        "Ownership transferred: you are an admin now.",
    )
