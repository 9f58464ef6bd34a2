"""Two-factor logins (docs/admin.md, "Two-factor"): the code asked for after the password, and the account page
where one turns it on (a QR code made here, confirmed with a code, recovery codes shown once), renews the recovery
codes or turns it off.

Enrolment serves a logged-in user, or a login past its password whose tenant requires two-factor (web/auth's
pending login, "enrol"): that one is logged in only once the code is confirmed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import abort, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from desk import accounts, audit
from desk.db import system_session
from desk.models import Tenant, User
from web.auth import (
    PENDING,
    begin_session,
    bp,
    client,
    landing,
    landing_url,
    limits,
    login_limits,
    pending_user,
    record,
    record_locks,
    too_many,
    two_factor_required,
)

# The secret being enrolled, encrypted, in the session until it is confirmed.
ENROLLING = "totp_enrolling"


def _secret_key() -> str:
    return str(current_app.config["SECRET_KEY"])


def _code_page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    return render_template("auth/code.html", error=error), status


@bp.route("/login/code", methods=["GET", "POST"])
def login_code() -> ResponseReturnValue:
    """The second step of a login: a code from the authenticator app, or a recovery code."""
    found = pending_user("code")
    if found is None:
        return redirect(url_for("auth.login", expired=1) if session.get(PENDING) else url_for("auth.login"))
    user, email = found
    if request.method == "GET":
        return _code_page()
    code = request.form.get("code", "")
    refusal, locks = limits.admit(email, request.remote_addr, login_limits())
    if refusal is not None:
        record(user.tenant_id, user.id, "login.failure", email, reason=refusal.reason, step="code")
        record_locks(user, email, locks)
        return too_many("auth/code.html", refusal)
    method = _use_code(user.id, code)
    if method is None:
        locks = limits.failed(email, request.remote_addr, login_limits())
        record(user.tenant_id, user.id, "login.failure", email, reason="code")
        record_locks(user, email, locks)
        if locks:
            session.pop(PENDING, None)
            return too_many("auth/code.html", limits.Refusal("locked", login_limits().lockout_seconds))
        return _code_page("That code is not right. Try the newest one from your app.", 401)
    limits.succeeded(email, request.remote_addr, login_limits(), complete=True)
    record(user.tenant_id, user.id, "login.success", email, second_factor=method)
    begin_session(user)
    return landing(user)


def _use_code(user_id: Any, code: str) -> str | None:
    """"totp" or "recovery" when `code` is right for the user (used up: a code works once), else None."""
    with system_session() as db:
        user = db.get(User, user_id, with_for_update=True)
        if user is None or user.totp_secret_encrypted is None:
            return None
        secret = accounts.decrypt_totp_secret(user.totp_secret_encrypted, _secret_key())
        step = accounts.totp_step(secret, code, user.totp_last_step) if secret else None
        if step is not None:
            user.totp_last_step = step
            db.commit()
            return "totp"
        if accounts.use_recovery_code(user, code):
            db.commit()
            return "recovery"
    return None


def _enrolling_user() -> tuple[User, bool] | None:
    """Whom the enrolment page is for: the logged-in user, or a pending login the tenant requires it of (True)."""
    if current_user.is_authenticated:
        with system_session() as db:
            user = db.get(User, current_user.id)
        return (user, False) if user is not None else None
    found = pending_user("enrol")
    return (found[0], True) if found is not None else None


def _tenant_requires(user: User) -> bool:
    with system_session() as db:
        return two_factor_required(db.get(Tenant, user.tenant_id))


def _enrolment_token(user: User, secret: str) -> str:
    """The secret being enrolled, sealed for the form. The form carries it rather than the session cookie alone:
    another tab's request answered after this page (the console polls) would write back a cookie without it."""
    return accounts.encrypt_totp_secret(f"{user.id}:{secret}", _secret_key())


def _enrolment_secret(user: User) -> str | None:
    """The secret the submitted form was showing, if it was sealed here for this user within the last hour."""
    sealed = request.form.get("enrolment", "")
    opened = accounts.decrypt_totp_secret(sealed, _secret_key(), ttl=3600) if sealed else None
    owner, _, secret = (opened or "").partition(":")
    return secret if secret and owner == str(user.id) else None


def _page(user: User, forced: bool, status: int = 200, **context: Any) -> ResponseReturnValue:
    enrolling = None
    if user.totp_enabled_at is None:
        encrypted = session.get(ENROLLING)
        secret = accounts.decrypt_totp_secret(encrypted, _secret_key()) if encrypted else None
        if secret is None:
            secret = accounts.new_totp_secret()
            session[ENROLLING] = accounts.encrypt_totp_secret(secret, _secret_key())
        uri = accounts.provisioning_uri(secret, user.email)
        enrolling = {"secret": secret, "qr": accounts.qr_svg(uri), "token": _enrolment_token(user, secret)}
    values = {
        "user": user,
        "forced": forced,
        "required": _tenant_requires(user),
        "enrolling": enrolling,
        "codes": None,
        "error": None,
        "notice": None,
        **context,
    }
    return render_template("auth/two_factor.html", **values), status


@bp.route("/account/two-factor", methods=["GET", "POST"])
def two_factor() -> ResponseReturnValue:
    """Turning two-factor on: show the QR code, confirm with a code; then show the recovery codes once."""
    found = _enrolling_user()
    if found is None:
        return redirect(url_for("auth.login"))
    user, forced = found
    if request.method == "GET" or user.totp_enabled_at is not None:
        return _page(user, forced)
    secret = _enrolment_secret(user)
    step = accounts.totp_step(secret, request.form.get("code", ""), None) if secret else None
    if secret is None or step is None:
        if secret is not None:  # the page shown again keeps the key the visitor's app already has
            session[ENROLLING] = accounts.encrypt_totp_secret(secret, _secret_key())
        return _page(user, forced, 400, error="That code is not right. Scan the QR code again, then type the code.")
    codes, hashes = accounts.new_recovery_codes()
    with system_session() as db:
        row = db.get(User, user.id, with_for_update=True)
        if row is None:
            abort(403)
        row.totp_secret_encrypted = accounts.encrypt_totp_secret(secret, _secret_key())
        row.totp_enabled_at = datetime.now(UTC)
        row.totp_last_step = step
        row.recovery_codes = hashes
        audit.record(
            db, tenant_id=row.tenant_id, actor_id=row.id, action="account.two_factor_on", client=client(), forced=forced
        )
        db.commit()
        db.refresh(row)
        user = row
    session.pop(ENROLLING, None)
    if forced:
        email = str(session[PENDING].get("email", user.email))
        limits.succeeded(email, request.remote_addr, login_limits(), complete=True)
        record(user.tenant_id, user.id, "login.success", email, second_factor="enrolled")
        begin_session(user)
    return _page(user, False, codes=codes, notice="Two-factor is on.", next_url=landing_url(user))


@bp.post("/account/two-factor/recovery-codes")
@login_required
def new_recovery_codes() -> ResponseReturnValue:
    """New recovery codes, shown once; the old ones stop working."""
    codes, hashes = accounts.new_recovery_codes()
    with system_session() as db:
        user = db.get(User, current_user.id, with_for_update=True)
        if user is None or user.totp_enabled_at is None:
            abort(409)
        user.recovery_codes = hashes
        audit.record(db, tenant_id=user.tenant_id, actor_id=user.id, action="account.recovery_codes", client=client())
        db.commit()
        db.refresh(user)
    return _page(user, False, codes=codes, notice="New recovery codes: the old ones no longer work.")


@bp.post("/account/two-factor/off")
@login_required
def turn_off() -> ResponseReturnValue:
    """Off, with the current password; refused while the tenant requires two-factor."""
    with system_session() as db:
        user = db.get(User, current_user.id, with_for_update=True)
        if user is None:
            abort(403)
        if _tenant_requires(user):
            return _page(user, False, 409, error="Your organisation requires two-factor: it cannot be turned off.")
        if not accounts.check_password(user.password_hash, request.form.get("password", "")):
            return _page(user, False, 400, error="Your password is not right: two-factor stays on.")
        user.totp_secret_encrypted = None
        user.totp_enabled_at = None
        user.totp_last_step = None
        user.recovery_codes = []
        audit.record(db, tenant_id=user.tenant_id, actor_id=user.id, action="account.two_factor_off", client=client())
        db.commit()
        db.refresh(user)
    return _page(user, False, notice="Two-factor is off.")
