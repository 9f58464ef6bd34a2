"""Logging agents and admins in and out (flask-login), accepting an invitation, changing one's password.

Every login attempt goes to the audit log (desk/audit.py) and through the attempt limits (web/auth/limits.py);
a session remembers the user's session epoch and ends when it is raised (desk/accounts.py); two-factor codes are
asked for after the password (web/auth/two_factor.py). docs/admin.md, "Account security", says what each page
enforces.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from desk import audit, tenant_settings
from desk.accounts import EPOCH, check_password, hash_password, password_problem, revoke_sessions, session_is_current
from desk.actions.admin import ActionError
from desk.actions.agents import do_accept_invite, find_invite, invite_problem
from desk.db import system_session, tenant_session
from desk.models import Tenant, User
from desk.settings import Logins, Settings
from web.auth import limits

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

SUSPENDED = "This account is suspended. Contact the service's operator."
# Where web/admin/guard.py reads the time of logging in, to end the session after the tenant's session_minutes.
LOGIN_AT = "login_at"
# A login past its password, waiting for a two-factor code or for enrolment: not logged in yet.
PENDING = "pending_login"
PENDING_SECONDS = 5 * 60
WRONG = "Wrong email or password."
# Requests a revoked session may still make (they need no login).
_OPEN_ENDPOINTS = ("static", "vendor.asset", "health.healthz", "health.readyz", "auth.login")


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
        self.session_epoch: int = user.session_epoch or 0
        self.two_factor = user.totp_enabled_at is not None

    def get_id(self) -> str:
        return str(self.id)


def client() -> audit.Client:
    return audit.Client(request.remote_addr, request.user_agent.string or None)


def login_limits() -> Logins:
    config: Settings = current_app.config["DESKBELL"]
    return config.logins


def record(tenant_id: uuid.UUID | None, actor_id: uuid.UUID | None, action: str, email: str, **detail: Any) -> None:
    with system_session() as db:
        audit.record(
            db,
            tenant_id=tenant_id,
            actor_id=actor_id,
            action=action,
            client=client(),
            email=email,
            source="web",
            **detail,
        )
        db.commit()


def record_locks(user: User | None, email: str, locks: list[limits.Lock]) -> None:
    for lock in locks:
        log.warning("auth: login locked", extra={"email": email, "ip": request.remote_addr, "scope": lock.scope})
        record(
            user.tenant_id if user else None,
            user.id if user else None,
            "login.locked",
            email,
            scope=lock.scope,
            until=lock.until.isoformat(),
            failures=lock.failures,
        )


def too_many(template: str, refusal: limits.Refusal, **context: Any) -> ResponseReturnValue:
    """The page again, saying how long to wait: 429 with Retry-After."""
    body = render_template(template, error=refusal.message, **context)
    return body, 429, {"Retry-After": str(refusal.retry_after)}


def _set_presence(user_id: uuid.UUID, tenant_id: uuid.UUID, presence: str) -> None:
    with tenant_session(tenant_id) as db:
        user = db.get(User, user_id)
        if user is not None:
            user.presence = presence
            db.commit()


def begin_session(user: User) -> None:
    """Log `user` in: a fresh session (no fixation: nothing of the session before carries over, and the cookie
    changes), with the user's session epoch and its start time, kept for the tenant's session lifetime."""
    session.clear()
    login_user(SessionUser(user))
    session.permanent = True
    session[LOGIN_AT] = time.time()
    session[EPOCH] = user.session_epoch or 0
    if user.role != "operator":
        _set_presence(user.id, user.tenant_id, "online")


def landing_url(user: User) -> str:
    return url_for("platform.tenants" if user.role == "operator" else "agent.inbox")


def landing(user: User) -> ResponseReturnValue:
    return redirect(landing_url(user))


def pend(user: User, email: str, step: str) -> None:
    """Past the password, waiting for `step` ("code" or "enrol"); a fresh session that is not logged in."""
    session.clear()
    epoch = user.session_epoch or 0
    session[PENDING] = {"user": str(user.id), "email": email, "epoch": epoch, "at": time.time(), "step": step}


def pending_user(step: str) -> tuple[User, str] | None:
    """The user a pending login (of `step`) is for, with the email typed; None when there is none, it is too old,
    or the user was deactivated or signed out everywhere since."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or pending.get("step") != step:
        return None
    if time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        session.pop(PENDING, None)
        return None
    with system_session() as db:
        user = db.get(User, uuid.UUID(pending["user"]))
    if user is None or not user.is_active or (user.session_epoch or 0) != pending.get("epoch"):
        session.pop(PENDING, None)
        return None
    return user, str(pending.get("email", user.email))


def two_factor_required(tenant: Tenant | None) -> bool:
    """The tenant's "require two-factor" setting (its own settings section, web/admin/settings.py)."""
    section = ((tenant.settings if tenant is not None else None) or {}).get("two_factor") or {}
    return bool(section.get("required"))


_dummy_hash: str | None = None


def _check(user: User | None, password: str) -> bool:
    """The password against the user's hash; an unknown email costs the same time (no telling who exists)."""
    global _dummy_hash
    if user is None or not user.is_active:
        _dummy_hash = _dummy_hash or hash_password("not anyone's password")
        check_password(_dummy_hash, password)
        return False
    return check_password(user.password_hash, password)


def _notice() -> str | None:
    if request.args.get("expired"):
        return "Your session has expired. Log in again."
    if request.args.get("revoked"):
        return "You have been signed out. Log in again."
    if request.args.get("suspended"):
        return SUSPENDED
    if request.args.get("deleted"):
        return "The account and all its data have been deleted."
    return None


def _admit(user: User | None, email: str) -> ResponseReturnValue | None:
    """The attempt counted; the answer when it may not even be checked (not even a right password), audited like
    any failure with why."""
    refusal, locks = limits.admit(email, request.remote_addr, login_limits())
    if refusal is None:
        return None
    record(user.tenant_id if user else None, user.id if user else None, "login.failure", email, reason=refusal.reason)
    record_locks(user, email, locks)
    return too_many("auth/login.html", refusal)


def _wrong(user: User | None, email: str, **detail: Any) -> ResponseReturnValue:
    """The answer to a wrong email or password, after the attempt was admitted: it stays counted and may lock."""
    locks = limits.failed(email, request.remote_addr, login_limits())
    # No `reason` for a plain wrong email or password, as ever.
    record(user.tenant_id if user else None, user.id if user else None, "login.failure", email, **detail)
    log.warning("auth: failed login", extra={"email": email, "ip": request.remote_addr})
    record_locks(user, email, locks)
    if locks:
        return too_many("auth/login.html", limits.Refusal("locked", login_limits().lockout_seconds))
    return render_template("auth/login.html", error=WRONG), 401


def refuse_login(user: User | None, email: str, **detail: Any) -> ResponseReturnValue:
    """Answer a login attempt as a wrong email or password, without looking at the password, counted toward the
    limits and audited as one (with `detail`): web/domains.py, another tenant's email on a tenant's domain."""
    refused = _admit(user, email)
    if refused is not None:
        return refused
    _check(None, request.form.get("password", ""))  # the time a wrong password takes
    return _wrong(user, email, **detail)


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("agent.inbox"))
    if request.method == "GET":
        # A notice (session expired, account deleted) takes the error's place on the unchanged login page.
        return render_template("auth/login.html", error=_notice())
    email = request.form.get("email", "").strip().lower()
    password = request.form.get("password", "")
    with system_session() as db:
        user = db.scalar(select(User).where(func.lower(User.email) == email))
        tenant = db.get(Tenant, user.tenant_id) if user is not None else None
    refused = _admit(user, email)
    if refused is not None:
        return refused
    if not _check(user, password):
        return _wrong(user, email)
    assert user is not None
    if tenant is not None and tenant.status == "suspended":
        limits.succeeded(email, request.remote_addr, login_limits(), complete=False)
        record(user.tenant_id, user.id, "login.failure", email, reason="suspended")
        return render_template("auth/login.html", error=SUSPENDED), 403
    if user.totp_enabled_at is not None:
        # The code still to come counts against the same limits: the account's failures are kept.
        limits.succeeded(email, request.remote_addr, login_limits(), complete=False)
        record(user.tenant_id, user.id, "login.password", email, next="code")
        pend(user, email, "code")
        return redirect(url_for("auth.login_code"))
    if two_factor_required(tenant):
        limits.succeeded(email, request.remote_addr, login_limits(), complete=False)
        record(user.tenant_id, user.id, "login.password", email, next="enrol")
        pend(user, email, "enrol")
        return redirect(url_for("auth.two_factor"))
    limits.succeeded(email, request.remote_addr, login_limits(), complete=True)
    record(user.tenant_id, user.id, "login.success", email)
    begin_session(user)
    return landing(user)


@bp.before_app_request
def _end_revoked_session() -> ResponseReturnValue | None:
    """A session from before its user's epoch was raised ("Sign out everywhere", deactivation, a password change
    elsewhere) ends at its next request."""
    if request.endpoint in _OPEN_ENDPOINTS or request.path.startswith("/api/"):
        return None
    if not current_user.is_authenticated or session_is_current(current_user, session):
        return None
    logout_user()
    session.clear()
    if request.headers.get("HX-Request"):
        # A fragment request: htmx would put the login page inside the console; this takes the whole tab there.
        return "", 401, {"HX-Redirect": url_for("auth.login", revoked=1)}
    return redirect(url_for("auth.login", revoked=1))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    _set_presence(current_user.id, current_user.tenant_id, "offline")
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


def min_length(tenant_id: uuid.UUID) -> int:
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
    length = min_length(invite.tenant_id)
    context = {"invite": invite, "tenant": tenant, "min_length": length, "problem": None}
    if request.method == "GET":
        return render_template("admin/invite.html", error=None, form={}, **context)
    name, password = request.form.get("name", ""), request.form.get("password", "")
    error = password_problem(password, length, invite.email)
    if error is None and password != request.form.get("confirm", ""):
        error = "The two passwords differ."
    if error is None:
        try:
            with tenant_session(invite.tenant_id) as db:
                user = do_accept_invite(db, invite.id, client(), name, password)
        except ActionError as exc:
            error = exc.message
    if error is not None:
        return render_template("admin/invite.html", error=error, form={"name": name}, **context), 400
    if two_factor_required(tenant):
        pend(user, user.email, "enrol")
        return redirect(url_for("auth.two_factor"))
    begin_session(user)
    return landing(user)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> ResponseReturnValue:
    length = min_length(current_user.tenant_id)
    if request.method == "GET":
        return render_template("admin/password.html", error=None, done=False, min_length=length)
    current, new = request.form.get("current", ""), request.form.get("password", "")
    with tenant_session(current_user.tenant_id) as db:
        user = db.get(User, current_user.id)
        if user is None:
            abort(403)
        error = None
        if not check_password(user.password_hash, current):
            error = "Your current password is not right."
        elif (problem := password_problem(new, length, user.email)) is not None:
            error = problem
        elif new != request.form.get("confirm", ""):
            error = "The two passwords differ."
        elif new == current:
            error = "The new password is the one you have now."
        if error is not None:
            return render_template("admin/password.html", error=error, done=False, min_length=length), 400
        user.password_hash = hash_password(new)
        # Whoever knew the old password is signed out; this browser goes on in the new epoch.
        epoch = revoke_sessions(db, user)
        audit.record(db, tenant_id=user.tenant_id, actor_id=user.id, action="account.password", client=client())
        db.commit()
    session[EPOCH] = epoch
    return render_template("admin/password.html", error=None, done=True, min_length=length)


from web.auth import two_factor  # noqa: E402,F401  (its routes are on this blueprint)
