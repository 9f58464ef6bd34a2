"""API keys: create (shown once), list, revoke (docs/admin.md, "API keys")."""

from __future__ import annotations

from flask import current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.actions import api_keys as act
from desk.actions.admin import ActionError
from desk.models import ApiKey
from web.admin import admin_session, bp, done, page, parse_id
from web.admin.roles import client, requires


def _page(
    session: Session,
    status: int = 200,
    error: str | None = None,
    new_key: str | None = None,
    new_name: str | None = None,
) -> ResponseReturnValue:
    keys = list(session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.created_at)))
    return page("admin/api_keys.html", status, keys=keys, error=error, new_key=new_key, new_name=new_name)


@bp.route("/api-keys", methods=["GET", "POST"])
@requires("admin", "owner")
def api_keys() -> ResponseReturnValue:
    with admin_session() as (session, actor):
        if request.method == "GET":
            return _page(session)
        try:
            key, full = act.do_create_api_key(
                session, actor, client(), request.form.get("name", ""), current_app.config["SECRET_KEY"]
            )
        except ActionError as exc:
            return _page(session, exc.status, exc.message)
        # The only time the secret is shown.
        response = _page(session, new_key=full, new_name=key.name)
    return response


@bp.post("/api-keys/<key_id>/revoke")
@requires("admin", "owner")
def revoke_api_key(key_id: str) -> ResponseReturnValue:
    with admin_session() as (session, actor):
        try:
            act.do_revoke_api_key(session, actor, client(), parse_id(key_id))
        except ActionError as exc:
            return _page(session, exc.status, exc.message)
    return done("API key revoked: requests signed with it are refused from now on.", "admin.api_keys")
