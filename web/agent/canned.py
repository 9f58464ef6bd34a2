"""Canned responses: per tenant (admins) and per agent, found by `/shortcut` in the composer.

The page /console/canned lists the agent's own saved replies (editable) and the tenant's shared ones (editable by
admins and owners, read-only for agents); /console/canned/search answers the composer (web/static/canned.js).
The rules are desk/actions/canned.py's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from desk.actions import canned as act
from desk.actions.conversations import ActionError
from desk.db import tenant_session
from desk.models import User
from desk.protocol import storable
from desk.queries import canned as q
from web.agent import bp


def _page(
    session: Session, error: str | None = None, form: dict[str, str] | None = None, status: int = 200
) -> tuple[str, int]:
    me = session.get(User, current_user.id)
    responses = list(session.scalars(q.visible(current_user.id)))
    return (
        render_template(
            "agent/canned.html",
            own=[c for c in responses if c.owner_id is not None],
            shared=[c for c in responses if c.owner_id is None],
            manages_shared=me is not None and act.manages_shared(me),
            error=error,
            form=form or {},
            limits=current_app.config["DESKBELL"].limits,
        ),
        status,
    )


def _change(action: Callable[[Session], str]) -> ResponseReturnValue:
    """Run one change; back to the page with what was done, or the page again with why not (and the form)."""
    with tenant_session(current_user.tenant_id) as session:
        try:
            done = action(session)
        except ActionError as exc:
            session.rollback()
            return _page(session, exc.message, request.form.to_dict(), exc.status)
    flash(done)
    return redirect(url_for("agent.canned_page"), 303)


@bp.get("/console/canned")
def canned_page() -> ResponseReturnValue:
    with tenant_session(current_user.tenant_id) as session:
        return _page(session)


@bp.post("/console/canned")
def canned_create() -> ResponseReturnValue:
    def action(session: Session) -> str:
        shared = request.form.get("scope") == "shared"
        created = act.do_create_canned(
            session,
            current_user.id,
            request.form.get("shortcut", ""),
            request.form.get("body", ""),
            shared=shared,
            limits=current_app.config["DESKBELL"].limits,
        )
        return f"Saved /{created.shortcut}."

    return _change(action)


@bp.post("/console/canned/<uuid:canned_id>")
def canned_update(canned_id: uuid.UUID) -> ResponseReturnValue:
    def action(session: Session) -> str:
        changed = act.do_update_canned(
            session,
            current_user.id,
            canned_id,
            request.form.get("shortcut", ""),
            request.form.get("body", ""),
            limits=current_app.config["DESKBELL"].limits,
        )
        return f"Saved /{changed.shortcut}."

    return _change(action)


@bp.post("/console/canned/<uuid:canned_id>/delete")
def canned_delete(canned_id: uuid.UUID) -> ResponseReturnValue:
    def action(session: Session) -> str:
        act.do_delete_canned(session, current_user.id, canned_id)
        return "Deleted."

    return _change(action)


@bp.get("/console/canned/search")
def canned_search() -> ResponseReturnValue:
    """The composer's `/shortcut` list: the agent's own first, then shared; shortcut prefixes before body words."""
    query = request.args.get("q", "")[:100]
    if not storable(query):  # a NUL or lone surrogate cannot be in any saved reply (and would fail the query)
        return jsonify(results=[])
    with tenant_session(current_user.tenant_id) as session:
        found = session.scalars(q.search(current_user.id, query))
        results = [
            {"id": str(c.id), "shortcut": c.shortcut, "body": c.body, "shared": c.owner_id is None} for c in found
        ]
    return jsonify(results=results)
