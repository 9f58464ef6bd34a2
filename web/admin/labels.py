"""Labels: create, rename, colour, delete (docs/admin.md, "Labels")."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.actions import labels as act
from desk.models import Label
from web.admin import admin_session, bp, change, page, parse_id
from web.admin.roles import client, requires


def _page(session: Session, status: int = 200, error: str | None = None) -> ResponseReturnValue:
    labels = list(session.scalars(select(Label).order_by(Label.name)))
    return page("admin/labels.html", status, labels=labels, error=error)


def _change(do: Any, message: str) -> ResponseReturnValue:
    return change(do, message, "admin.labels", lambda session, _, exc: _page(session, exc.status, exc.message))


@bp.route("/labels", methods=["GET", "POST"])
@requires("admin", "owner")
def labels() -> ResponseReturnValue:
    if request.method == "POST":
        form = request.form.to_dict()
        return _change(lambda s, a: act.do_create_label(s, a, client(), form), "Label created.")
    with admin_session() as (session, _actor):
        return _page(session)


@bp.post("/labels/<label_id>")
@requires("admin", "owner")
def update_label(label_id: str) -> ResponseReturnValue:
    form = request.form.to_dict()
    return _change(lambda s, a: act.do_update_label(s, a, client(), parse_id(label_id), form), "Label saved.")


@bp.post("/labels/<label_id>/delete")
@requires("admin", "owner")
def delete_label(label_id: str) -> ResponseReturnValue:
    return _change(lambda s, a: act.do_delete_label(s, a, client(), parse_id(label_id)), "Label deleted.")
