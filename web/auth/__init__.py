"""Logging agents and admins in and out (flask-login); every attempt goes to the audit log."""

from __future__ import annotations

import logging
import uuid

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from desk.accounts import check_password
from desk.db import system_session, tenant_session
from desk.models import AuditLog, User

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)


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

    def get_id(self) -> str:
        return str(self.id)


def _audit(tenant_id: uuid.UUID | None, actor_id: uuid.UUID | None, action: str, email: str) -> None:
    with system_session() as session:
        session.add(
            AuditLog(
                tenant_id=tenant_id,
                actor_id=actor_id,
                action=action,
                detail={"email": email, "source": "web"},
                ip=request.remote_addr,
                user_agent=(request.user_agent.string or "")[:400],
            )
        )
        session.commit()


def _set_presence(user_id: uuid.UUID, tenant_id: uuid.UUID, presence: str) -> None:
    with tenant_session(tenant_id) as session:
        user = session.get(User, user_id)
        if user is not None:
            user.presence = presence
            session.commit()


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("agent.inbox"))
    error = None
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        with system_session() as session:
            user = session.scalar(select(User).where(func.lower(User.email) == email))
        if user is not None and user.is_active and check_password(user.password_hash, password):
            login_user(SessionUser(user))
            _set_presence(user.id, user.tenant_id, "online")
            _audit(user.tenant_id, user.id, "login.success", email)
            return redirect(url_for("agent.inbox"))
        _audit(user.tenant_id if user else None, user.id if user else None, "login.failure", email)
        log.warning("auth: failed login", extra={"email": email, "ip": request.remote_addr})
        error = "Wrong email or password."
    return render_template("auth/login.html", error=error), 401 if error else 200


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    _set_presence(current_user.id, current_user.tenant_id, "offline")
    logout_user()
    return redirect(url_for("auth.login"))
