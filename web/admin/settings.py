"""Routing and security settings (desk/tenant_settings.py), the two-factor requirement (its own section of the
tenant's settings, read by web/auth), and the tenant itself: its deletion, by an owner, in SaaS mode only
(docs/admin.md, "Routing and security", "Two-factor", "Deleting the tenant")."""

from __future__ import annotations

from typing import Any

from flask import current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import logout_user

from desk import tenant_settings
from desk.actions import admin as act
from desk.actions.admin import ActionError, record
from desk.actions.platform import do_delete_tenant
from desk.db import system_session
from desk.models import Tenant, User
from web.admin import admin_session, bp, done, page
from web.admin import rules as _rules  # noqa: F401  (the routing rules' routes: a page of their own)
from web.admin.roles import client, requires, saas
from web.auth import two_factor_required


def _page(
    tenant: Tenant,
    status: int = 200,
    error: str | None = None,
    section: str | None = None,
    form: dict[str, str] | None = None,
) -> ResponseReturnValue:
    values = tenant_settings.effective(tenant.settings)
    return page(
        "admin/settings.html",
        status,
        values=values,
        networks="\n".join(values["security"]["console_networks"]),
        strategies=tenant_settings.STRATEGIES,
        error=error,
        error_section=section,
        form=form,
        your_address=request.remote_addr,
        tenant=tenant,
        two_factor_required=two_factor_required(tenant),
        # Routing's time limits: a tenant's own when stored, else these (desk/settings.py, DESKBELL_ROUTING_*).
        routing_defaults=current_app.config["DESKBELL"].routing,
    )


@bp.get("/settings")
@requires("admin", "owner")
def settings() -> ResponseReturnValue:
    with admin_session() as (session, actor):
        tenant = session.get(Tenant, actor.tenant_id)
        assert tenant is not None
        return _page(tenant)


@bp.post("/settings/<section>")
@requires("admin", "owner")
def save_settings(section: str) -> ResponseReturnValue:
    with admin_session() as (session, actor):
        try:
            form: dict[str, Any] = request.form.to_dict()
            act.do_update_settings(session, actor, client(), section, form)  # keeps the routing rules
        except ActionError as exc:
            session.rollback()
            tenant = session.get(Tenant, actor.tenant_id)
            assert tenant is not None
            return _page(tenant, exc.status, exc.message, section, request.form.to_dict())
    return done("Settings saved.", "admin.settings")


@bp.post("/settings/two-factor")
@requires("admin", "owner")
def save_two_factor() -> ResponseReturnValue:
    """Require two-factor of everyone in the tenant: whoever has none sets it up at their next login."""
    required = request.form.get("required") not in (None, "", "0", "false", "off")
    with admin_session() as (session, actor):
        tenant = session.get(Tenant, actor.tenant_id, with_for_update=True)
        assert tenant is not None
        before = two_factor_required(tenant)
        tenant.settings = {**(tenant.settings or {}), "two_factor": {"required": required}}
        change = {"before": {"required": before}, "after": {"required": required}}
        record(session, actor, client(), "settings.two_factor", **change)
        session.commit()
    return done("Settings saved.", "admin.settings")


@bp.route("/tenant", methods=["GET", "POST"])
@requires("owner")
def tenant() -> ResponseReturnValue:
    """The tenant's deletion: refused when self-hosted (there is only this one); with its short name typed in SaaS."""
    with admin_session() as (session, actor):
        found = session.get(Tenant, actor.tenant_id)
        assert found is not None
        if request.method == "GET":
            return page("admin/tenant.html", tenant=found, error=None)
        if not saas():
            message = "A self-hosted installation keeps its one tenant: to remove everything, uninstall Deskbell."
            return page("admin/tenant.html", 409, tenant=found, error=message)
    with system_session() as db:
        me = db.get(User, actor.id)
        assert me is not None
        try:
            do_delete_tenant(db, me, client(), found.id, request.form.get("confirm", ""))
        except ActionError as exc:
            return page("admin/tenant.html", exc.status, tenant=found, error=exc.message)
    logout_user()
    return redirect(url_for("auth.login", deleted=1), 303)
