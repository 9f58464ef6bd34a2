"""The admin panel under /admin and, in SaaS mode, the platform pages under /platform (docs/admin.md).

One module per part, each a set of routes on this blueprint, every one behind `roles.requires`:

- sites.py      sites, the widget's look, the identity secret, the embed snippet
- agents.py     people: invitations by link, roles and ownership, deactivation, capacity, teams
- teams.py      teams and their members; business hours and holidays (the tenant's and each team's)
- labels.py     labels
- settings.py   routing and security settings; the tenant's deletion (owners)
- api_keys.py   API keys, shown once
- audit.py      the audit log: search and CSV
- platform.py   SaaS tenants for platform operators (its own blueprint, /platform)

Pages are rendered whole; htmx (hx-boost on the panel) swaps in the panel's <main> only. A change answers 303 to
the page it came from (with a flash message), or the page with the error and a 4xx status.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Flask, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from desk.actions.admin import ActionError
from desk.db import tenant_session
from desk.models import User
from web.admin import guard, roles

bp = Blueprint("admin", __name__, url_prefix="/admin")


@contextmanager
def admin_session() -> Iterator[tuple[Session, User]]:
    """The logged-in user's tenant session and their row (the acting user the actions check)."""
    with tenant_session(current_user.tenant_id) as session:
        actor = session.get(User, current_user.id)
        if actor is None:
            abort(403)
        yield session, actor


def page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(template, **context), status


def done(message: str, endpoint: str, **values: Any) -> ResponseReturnValue:
    """After a change: the page to show next, with what happened as a flash message."""
    flash(message)
    return redirect(url_for(endpoint, **values), 303)


def change(
    do: Callable[[Session, User], object],
    message: str,
    endpoint: str,
    refused: Callable[[Session, User, ActionError], ResponseReturnValue],
) -> ResponseReturnValue:
    """Run an action as the logged-in admin: then `endpoint` with `message`, or, when the action refuses, what
    `refused` shows (the page again with the reason)."""
    with admin_session() as (session, actor):
        try:
            do(session, actor)
        except ActionError as exc:
            session.rollback()
            return refused(session, actor, exc)
    return done(message, endpoint)


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        abort(404)


@bp.after_request
def _no_store(response: Any) -> Any:
    # Admin pages show links and keys once, and people's details: no cache keeps them.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def _panel() -> dict[str, Any]:
    return {"role_of": roles.has_role, "saas": roles.saas()}


@bp.get("")
@roles.requires("admin", "owner")
def index() -> ResponseReturnValue:
    return redirect(url_for("admin.sites"), 303)


def install(app: Flask) -> None:
    """The admin and platform blueprints and the per-request guard (web/__init__.py calls this once)."""
    from web.admin import agents, api_keys, audit, labels, settings, sites, teams  # noqa: F401  (routes)
    from web.admin.platform import bp as platform_bp

    app.register_blueprint(bp)
    app.register_blueprint(platform_bp)
    guard.install(app)
