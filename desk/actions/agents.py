"""The tenant's people (docs/admin.md, "Agents and roles"): invitations by link, roles and ownership,
deactivation, capacity and teams.

Rules: an admin manages agents and admins; only an owner makes or unmakes owners, transfers ownership, or
deactivates an owner; the last owner keeps the role and stays active; nobody deactivates themselves.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from desk import audit
from desk.accounts import hash_password
from desk.actions.admin import Conflict, Forbidden, Invalid, NotFound, record, text
from desk.models import Invite, Team, TeamMember, Tenant, User

INVITE_DAYS = 7
NAME_CHARS = 200
MAX_CHATS = 100
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# The SaaS platform's own tenant: its users with the role "operator" manage the other tenants (docs/admin.md).
PLATFORM_SLUG = "platform"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitable_roles(actor: User, tenant: Tenant, saas: bool) -> tuple[str, ...]:
    """What `actor` may invite people as: agents and admins; operators too in the SaaS platform's tenant."""
    roles: tuple[str, ...] = ("agent", "admin")
    if saas and tenant.slug == PLATFORM_SLUG:
        roles += ("operator",)
    return roles


def _user(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("No such agent.")
    return user


def _owners(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.role == "owner", User.is_active)) or 0


def _check_may_manage(actor: User, target: User) -> None:
    if target.role == "owner" and actor.role != "owner":
        raise Forbidden("Only an owner can change an owner.")


# -- invitations --------------------------------------------------------------------------------------------------


def do_create_invite(
    session: Session, actor: User, client: audit.Client, email: str, role: str, allowed_roles: tuple[str, ...]
) -> tuple[Invite, str]:
    """A link to join with `role`, valid INVITE_DAYS days. Returns the invite and its token, which is stored
    only hashed: the admin sees the link once. Commits."""
    email = email.strip().lower()
    if not EMAIL.fullmatch(email) or len(email) > 320:
        raise Invalid("Enter the email address of the person to invite.")
    if role not in allowed_roles:
        raise Forbidden(f"You cannot invite someone as {role}.")
    if session.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
        raise Conflict(f"{email} already has an account here.")
    token = secrets.token_urlsafe(32)
    invite = Invite(
        email=email,
        role=role,
        token_hash=token_hash(token),
        invited_by_id=actor.id,
        expires_at=datetime.now(UTC) + timedelta(days=INVITE_DAYS),
    )
    session.add(invite)
    session.flush()
    record(session, actor, client, "invite.create", after={"email": email, "role": role}, invite_id=invite.id)
    session.commit()
    return invite, token


def find_invite(session: Session, token: str) -> Invite | None:
    """The invite a link's token names (any tenant's: run in a system session, before anyone is logged in)."""
    return session.scalar(select(Invite).where(Invite.token_hash == token_hash(token)))


def invite_problem(invite: Invite | None, now: datetime | None = None) -> str | None:
    """Why a link cannot be used, in words for the person who followed it; None when it can."""
    now = now or datetime.now(UTC)
    if invite is None:
        return "This invitation link is not valid. Ask your admin for a new one."
    if invite.accepted_at is not None:
        return "This invitation has been used already. Log in instead, or ask your admin for a new link."
    if invite.expires_at <= now:
        return "This invitation has expired. Ask your admin for a new link."
    return None


def do_accept_invite(session: Session, invite_id: uuid.UUID, client: audit.Client, name: str, password: str) -> User:
    """Make the invited account (session of the invite's tenant); the link works once. Commits."""
    invite = session.get(Invite, invite_id, with_for_update=True)
    problem = invite_problem(invite)
    if problem is not None:
        raise Conflict(problem)
    assert invite is not None
    user = User(
        email=invite.email,
        name=text(name, "Name", NAME_CHARS),
        role=invite.role,
        password_hash=hash_password(password),
    )
    session.add(user)
    invite.accepted_at = datetime.now(UTC)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"{invite.email} already has an account. Log in instead.") from None
    audit.record(
        session,
        tenant_id=invite.tenant_id,
        actor_id=user.id,
        action="invite.accept",
        client=client,
        invite_id=invite.id,
        email=user.email,
        role=user.role,
    )
    session.commit()
    return user


def do_revoke_invite(session: Session, actor: User, client: audit.Client, invite_id: uuid.UUID) -> None:
    invite = session.get(Invite, invite_id, with_for_update=True)
    if invite is None or invite.accepted_at is not None:
        raise NotFound("No such pending invitation.")
    invite.expires_at = datetime.now(UTC)
    record(
        session,
        actor,
        client,
        "invite.revoke",
        before={"status": "pending"},
        after={"status": "revoked"},
        invite_id=invite.id,
        email=invite.email,
    )
    session.commit()


# -- roles, ownership, deactivation --------------------------------------------------------------------------------


def do_set_role(session: Session, actor: User, client: audit.Client, user_id: uuid.UUID, role: str) -> User:
    target = _user(session, user_id)
    if role not in ("agent", "admin", "owner"):
        raise Invalid("Choose agent, admin or owner.")
    if role == target.role:
        return target
    _check_may_manage(actor, target)
    if role == "owner" and actor.role != "owner":
        raise Forbidden("Only an owner can make someone an owner.")
    if target.role == "operator":
        raise Forbidden("A platform operator stays one; deactivate them instead.")
    if target.role == "owner" and _owners(session) <= 1:
        raise Conflict("The last owner cannot be demoted: transfer the ownership first.")
    before = {"role": target.role}
    target.role = role
    record(
        session, actor, client, "agent.role", before=before, after={"role": role}, user_id=target.id, email=target.email
    )
    session.commit()
    return target


def do_transfer_ownership(session: Session, actor: User, client: audit.Client, user_id: uuid.UUID) -> User:
    """`user_id` becomes an owner and the acting owner an admin."""
    if actor.role != "owner":
        raise Forbidden("Only an owner can transfer the ownership.")
    target = _user(session, user_id)
    if target.id == actor.id:
        raise Invalid("You are the owner already.")
    if not target.is_active or target.role not in ("agent", "admin"):
        raise Invalid("Transfer the ownership to an active agent or admin.")
    me = _user(session, actor.id)
    record(
        session,
        actor,
        client,
        "tenant.transfer_ownership",
        before={"owner": me.email},
        after={"owner": target.email},
        user_id=target.id,
    )
    target.role, me.role = "owner", "admin"
    session.commit()
    return target


def do_set_active(session: Session, actor: User, client: audit.Client, user_id: uuid.UUID, active: bool) -> User:
    """Deactivate (their sessions stop working at once: flask-login loads only active users) or reactivate."""
    target = _user(session, user_id)
    if target.id == actor.id:
        raise Invalid("You cannot deactivate yourself.")
    _check_may_manage(actor, target)
    if target.is_active == active:
        return target
    if not active and target.role == "owner" and _owners(session) <= 1:
        raise Conflict("The last owner cannot be deactivated.")
    before = {"is_active": target.is_active}
    target.is_active = active
    if not active:
        target.presence = "offline"  # routing gives nothing to someone who cannot log in
    record(
        session,
        actor,
        client,
        "agent.activate" if active else "agent.deactivate",
        before=before,
        after={"is_active": active},
        user_id=target.id,
        email=target.email,
    )
    session.commit()
    return target


def do_update_agent(
    session: Session, actor: User, client: audit.Client, user_id: uuid.UUID, form: dict[str, Any]
) -> User:
    """Max concurrent chats (0: no limit) and team memberships (`team_ids`, the teams they are in)."""
    target = _user(session, user_id)
    _check_may_manage(actor, target)
    try:
        max_chats = int(str(form.get("max_chats", target.max_chats)).strip() or 0)
    except ValueError:
        raise Invalid("Max concurrent chats must be a whole number.") from None
    if not 0 <= max_chats <= MAX_CHATS:
        raise Invalid(f"Max concurrent chats must be between 0 (no limit) and {MAX_CHATS}.")
    try:
        wanted = {uuid.UUID(t) for t in form.get("team_ids", [])}
    except ValueError:
        raise Invalid("No such team.") from None
    teams = {t.id: t.name for t in session.scalars(select(Team).where(Team.id.in_(wanted)))}
    if len(teams) != len(wanted):
        raise Invalid("No such team.")
    current = set(session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == target.id)))
    names = {t.id: t.name for t in session.scalars(select(Team))}
    before = {"max_chats": target.max_chats, "teams": sorted(names[t] for t in current)}
    target.max_chats = max_chats
    session.execute(delete(TeamMember).where(TeamMember.user_id == target.id, TeamMember.team_id.not_in(wanted)))
    session.add_all(TeamMember(team_id=t, user_id=target.id) for t in wanted - current)
    after = {"max_chats": max_chats, "teams": sorted(teams.values())}
    if after != before:
        record(
            session, actor, client, "agent.update", before=before, after=after, user_id=target.id, email=target.email
        )
    session.commit()
    return target
