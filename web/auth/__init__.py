"""Logging agents and admins in and out (flask-login), accepting an invitation, changing one's password.
Every login attempt goes to the audit log (desk/audit.py); docs/admin.md says what each page enforces."""

from __future__ import annotations

import logging
import time
import uuid

from flask import Blueprint, abort, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from desk import audit, tenant_settings
from desk.accounts import check_password, hash_password
from desk.actions.admin import ActionError
from desk.actions.agents import do_accept_invite, find_invite, invite_problem
from desk.db import system_session, tenant_session
from desk.models import Tenant, User

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

SUSPENDED = "This account is suspended. Contact the service's operator."
# Where web/admin/guard.py reads the time of logging in, to end the session after the tenant's session_minutes.
LOGIN_AT = "login_at"


class SessionUser:
    """What flask-login keeps for the request: the user's ids and role, not a live ORM object."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, user: User) -> None:
        self.id: uuid.UUID = user.id
        self.tenant_id: uuid.UUID = user.tenant_id
        self.name = user.name
        self.email = user.email
        self.role = user.role
        self.presence = user.presence  # as of this request's start: the console's presence picker shows it

    def get_id(self) -> str:
        return str(self.id)


def _client() -> audit.Client:
    return audit.Client(request.remote_addr, request.user_agent.string or None)


def _audit(tenant_id: uuid.UUID | None, actor_id: uuid.UUID | None, action: str, email: str, **detail: object) -> None:
    with system_session() as session:
        audit.record(
            session,
            tenant_id=tenant_id,
            actor_id=actor_id,
            action=action,
            client=_client(),
            email=email,
            source="web",
            **detail,
        )
        session.commit()


def _set_presence(user_id: uuid.UUID, tenant_id: uuid.UUID, presence: str) -> None:
    with tenant_session(tenant_id) as session:
        user = session.get(User, user_id)
        if user is not None:
            user.presence = presence
            session.commit()


def _start_session(user: User) -> ResponseReturnValue:
    """Log `user` in: a fresh session (no fixation), its start time kept for the tenant's session lifetime."""
    session.clear()
    login_user(SessionUser(user))
    session.permanent = True
    session[LOGIN_AT] = time.time()
    if user.role == "operator":
        return redirect(url_for("platform.tenants"))
    _set_presence(user.id, user.tenant_id, "online")
    return redirect(url_for("agent.inbox"))


def _notice() -> str | None:
    if request.args.get("expired"):
        return "Your session has expired. Log in again."
    if request.args.get("suspended"):
        return SUSPENDED
    if request.args.get("deleted"):
        return "The account and all its data have been deleted."
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("agent.inbox"))
    error = None
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        with system_session() as db:
            user = db.scalar(select(User).where(func.lower(User.email) == email))
            tenant = db.get(Tenant, user.tenant_id) if user is not None else None
        if user is not None and user.is_active and check_password(user.password_hash, password):
            if tenant is not None and tenant.status == "suspended":
                _audit(user.tenant_id, user.id, "login.failure", email, reason="suspended")
                return render_template("auth/login.html", error=SUSPENDED), 403
            _audit(user.tenant_id, user.id, "login.success", email)
            return _start_session(user)
        _audit(user.tenant_id if user else None, user.id if user else None, "login.failure", email)
        log.warning("auth: failed login", extra={"email": email, "ip": request.remote_addr})
        error = "Wrong email or password."
    # A notice (session expired, account deleted) takes the error's place on the unchanged login page.
    return render_template("auth/login.html", error=error or _notice()), 401 if error else 200


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    _set_presence(current_user.id, current_user.tenant_id, "offline")
    logout_user()
    session.pop(LOGIN_AT, None)
    return redirect(url_for("auth.login"))


def _min_length(tenant_id: uuid.UUID) -> int:
    with system_session() as db:
        tenant = db.get(Tenant, tenant_id)
    stored = tenant.settings if tenant is not None else {}
    return int(tenant_settings.effective(stored)["security"]["password_min_length"])


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept_invite(token: str) -> ResponseReturnValue:
    """An invitation link: the invitee chooses their name and password and is logged in. Used or expired links
    say so (410)."""
    with system_session() as db:
        invite = find_invite(db, token)
        tenant = db.get(Tenant, invite.tenant_id) if invite is not None else None
    problem = invite_problem(invite)
    if problem is None and tenant is not None and tenant.status == "suspended":
        problem = SUSPENDED
    if problem is not None or invite is None:
        return render_template("admin/invite.html", problem=problem, invite=None), 410 if invite else 404
    min_length = _min_length(invite.tenant_id)
    context = {"invite": invite, "tenant": tenant, "min_length": min_length, "problem": None}
    if request.method == "GET":
        return render_template("admin/invite.html", error=None, form={}, **context)
    name, password = request.form.get("name", ""), request.form.get("password", "")
    error = tenant_settings.password_problem(password, min_length)
    if error is None and password != request.form.get("confirm", ""):
        error = "The two passwords differ."
    if error is None:
        try:
            with tenant_session(invite.tenant_id) as db:
                user = do_accept_invite(db, invite.id, _client(), name, password)
        except ActionError as exc:
            error = exc.message
    if error is not None:
        return render_template("admin/invite.html", error=error, form={"name": name}, **context), 400
    return _start_session(user)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> ResponseReturnValue:
    min_length = _min_length(current_user.tenant_id)
    if request.method == "GET":
        return render_template("admin/password.html", error=None, done=False, min_length=min_length)
    current, new = request.form.get("current", ""), request.form.get("password", "")
    with tenant_session(current_user.tenant_id) as db:
        user = db.get(User, current_user.id)
        if user is None:
            abort(403)
        error = None
        if not check_password(user.password_hash, current):
            error = "Your current password is not right."
        elif (problem := tenant_settings.password_problem(new, min_length)) is not None:
            error = problem
        elif new != request.form.get("confirm", ""):
            error = "The two passwords differ."
        if error is not None:
            return render_template("admin/password.html", error=error, done=False, min_length=min_length), 400
        user.password_hash = hash_password(new)
        audit.record(db, tenant_id=user.tenant_id, actor_id=user.id, action="account.password", client=_client())
        db.commit()
    return render_template("admin/password.html", error=None, done=True, min_length=min_length)
