"""The platform pages (SaaS mode only; 404 when self-hosted): the operator lists, creates, suspends, resumes
and deletes tenants (desk/actions/platform.py). No page here shows a conversation (docs/admin.md, "SaaS mode")."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from desk.actions import platform as act
from desk.actions.admin import ActionError
from desk.db import system_session
from desk.models import User
from web.admin import done, page, parse_id
from web.admin.roles import client, requires, saas

bp = Blueprint("platform", __name__, url_prefix="/platform")


@bp.before_request
def _saas_only() -> None:
    if not saas():
        abort(404)


@bp.after_request
def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response


def _operator(session: Session) -> User:
    operator = session.get(User, current_user.id)
    if operator is None:
        abort(403)
    return operator


def _page(session: Session, status: int = 200, **extra: Any) -> ResponseReturnValue:
    context: dict[str, Any] = {"error": None, "created": None, "form": {}}
    return page("admin/platform.html", status, tenants=act.tenants(session), **{**context, **extra})


@bp.route("", methods=["GET", "POST"])
@requires("operator")
def tenants() -> ResponseReturnValue:
    with system_session() as session:
        if request.method == "GET":
            return _page(session)
        form = request.form.to_dict()
        try:
            created = act.do_create_tenant(
                session,
                _operator(session),
                client(),
                form.get("slug", ""),
                form.get("name", ""),
                form.get("owner_email", ""),
            )
        except ActionError as exc:
            session.rollback()
            return _page(session, exc.status, error=exc.message, form=form)
        # The owner's first password, shown in this answer only.
        return _page(session, created=created)


def _change(do: Any, message: str) -> ResponseReturnValue:
    with system_session() as session:
        try:
            do(session, _operator(session))
        except ActionError as exc:
            session.rollback()
            return _page(session, exc.status, error=exc.message)
    return done(message, "platform.tenants")


@bp.post("/tenants/<tenant_id>/suspend")
@requires("operator")
def suspend(tenant_id: str) -> ResponseReturnValue:
    return _change(
        lambda s, o: act.do_set_status(s, o, client(), parse_id(tenant_id), "suspended"),
        "Tenant suspended: its people and widgets are refused until you resume it.",
    )


@bp.post("/tenants/<tenant_id>/resume")
@requires("operator")
def resume(tenant_id: str) -> ResponseReturnValue:
    return _change(lambda s, o: act.do_set_status(s, o, client(), parse_id(tenant_id), "active"), "Tenant resumed.")


@bp.post("/tenants/<tenant_id>/delete")
@requires("operator")
def delete(tenant_id: str) -> ResponseReturnValue:
    confirmation = request.form.get("confirm", "")
    return _change(
        lambda s, o: act.do_delete_tenant(s, o, client(), parse_id(tenant_id), confirmation),
        "Tenant deleted with all its data.",
    )
