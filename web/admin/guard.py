"""The tenant's rules on every logged-in request (docs/admin.md, "Routing and security"), before any view runs:

- a suspended tenant's sessions end, and the login page says why (SaaS mode; desk/actions/platform.py);
- a login lasts the tenant's `session_minutes` from the moment of logging in (the time is kept in the session);
- the console, the admin pages and the account page answer only addresses in the tenant's `console_networks`;
- platform operators have no console (they see no conversations).

The tenant row is read once per request, with the user, and kept in `g.tenant` for the views.
"""

from __future__ import annotations

import time

from flask import Flask, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, logout_user

from desk import tenant_settings
from desk.db import system_session
from desk.models import Tenant

LOGIN_AT = "login_at"
# The pages the console_networks setting protects.
NETWORK_GUARDED = ("/console", "/admin", "/platform", "/account")
UNGUARDED_ENDPOINTS = ("static", "vendor.asset", "health.healthz", "health.readyz")


def refused(message: str, status: int = 403, title: str = "Not allowed") -> ResponseReturnValue:
    return render_template("admin/refused.html", message=message, title=title), status


def _end_session() -> None:
    logout_user()
    session.pop(LOGIN_AT, None)


def _guard() -> ResponseReturnValue | None:
    if request.endpoint in UNGUARDED_ENDPOINTS or request.path.startswith("/api/"):
        return None
    if not current_user.is_authenticated:
        return None
    tenant = g.get("tenant")  # read with the user by the user loader (web/__init__.py)
    if tenant is None:
        with system_session() as db:
            tenant = db.get(Tenant, current_user.tenant_id)
        g.tenant = tenant
    if tenant is None:
        _end_session()
        return redirect(url_for("auth.login"))
    if tenant.status == "suspended":
        # To the login page, which says why: a page rendered here would still run the blueprint's context
        # processors (the console's need a logged-in user).
        _end_session()
        return redirect(url_for("auth.login", suspended=1))
    security = tenant_settings.effective(tenant.settings)["security"]
    now = time.time()
    started = session.get(LOGIN_AT)
    if not isinstance(started, int | float):
        session[LOGIN_AT] = now  # a session from before login times were kept: its lifetime starts now
    elif now - started > security["session_minutes"] * 60:
        _end_session()
        return redirect(url_for("auth.login", expired=1))
    guarded = request.path.startswith(NETWORK_GUARDED)
    if guarded and not tenant_settings.allows(security["console_networks"], request.remote_addr):
        return refused(
            f"Your address ({request.remote_addr}) is not in the address ranges your admin allows for the console.",
            title="Not from this network",
        )
    if current_user.role == "operator" and request.path.startswith("/console"):
        return refused("Platform operators have no console. The platform pages are at /platform.")
    return None


def install(app: Flask) -> None:
    app.before_request(_guard)
