"""Routing rules: the ordered list that sends new conversations to teams (desk/actions/rules.py; docs/admin.md,
"Routing rules"). List, add, delete, move up or down; admins and owners; each change audited."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import routing_rules
from desk.actions import rules as act
from desk.models import Site, Team, Tenant, User
from web.admin import admin_session, bp, change, page
from web.admin.roles import client, requires


def _page(session: Session, actor: User, status: int = 200, error: str | None = None, form: Any = None) -> Any:
    tenant = session.get(Tenant, actor.tenant_id)
    teams = list(session.scalars(select(Team).order_by(Team.name)))
    sites = list(session.scalars(select(Site).order_by(Site.name)))
    team_names = {str(t.id): t.name for t in teams}
    site_names = {str(s.id): s.name for s in sites}
    rows = []
    for rule in act.stored_rules(tenant.settings if tenant else None):
        team = team_names.get(str(rule.get("team_id")), "(a deleted team: never matches)")
        text = routing_rules.describe(rule, team, site_names.get(str(rule.get("value"))))
        rows.append({"id": rule.get("id"), "text": text})
    return page(
        "admin/rules.html",
        status,
        rules=rows,
        teams=teams,
        sites=sites,
        conditions=routing_rules.CONDITIONS,
        limit=routing_rules.RULES_MAX,
        value_chars=routing_rules.VALUE_CHARS,
        pre_chat_key=routing_rules.PRE_CHAT_KEY,
        error=error,
        form=form or {},
    )


def _change(do: Any, message: str) -> ResponseReturnValue:
    return change(
        do, message, "admin.routing_rules", lambda s, actor, exc: _page(s, actor, exc.status, exc.message, request.form)
    )


@bp.route("/routing-rules", methods=["GET", "POST"], endpoint="routing_rules")
@requires("admin", "owner")
def routing_rules_page() -> ResponseReturnValue:
    if request.method == "POST":
        form = request.form.to_dict()
        return _change(lambda s, a: act.do_add_rule(s, a, client(), form), "Rule added at the end of the list.")
    with admin_session() as (session, actor):
        return _page(session, actor)


@bp.post("/routing-rules/<rule_id>/delete")
@requires("admin", "owner")
def delete_routing_rule(rule_id: str) -> ResponseReturnValue:
    return _change(lambda s, a: act.do_delete_rule(s, a, client(), rule_id), "Rule deleted.")


@bp.post("/routing-rules/<rule_id>/move")
@requires("admin", "owner")
def move_routing_rule(rule_id: str) -> ResponseReturnValue:
    direction = request.form.get("direction", "")
    return _change(lambda s, a: act.do_move_rule(s, a, client(), rule_id, direction), "Rule moved.")
