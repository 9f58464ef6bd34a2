"""SaaS mode: on a tenant's own domain, only that tenant's people (docs/admin.md, "Per-tenant domains").

A request whose host is tenant A's domain (desk/domains.py) is refused for a session of any other tenant's user,
and a login there with another tenant's email fails as a wrong password would (the email's owner is not told
where the account lives). Other hosts (the platform's own address) take anyone, the tenant then coming from the
user's row as everywhere else. Self-hosted installations ignore hosts. Visitors are not concerned: their tenant
comes from the site key and their signed token; nor is the server-to-server API (its key names the tenant).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, select

from desk import domains
from desk.db import system_session
from desk.models import User
from desk.settings import Settings

# Nothing here depends on who is logged in.
OPEN_ENDPOINTS = ("static", "vendor.asset", "health.healthz", "health.readyz", "metrics.metrics")
ELSEWHERE = "This address belongs to another organisation. Log in at your own organisation's address."


def host_tenant() -> uuid.UUID | None:
    """The tenant whose domain this request's host is; None on any other host. One indexed query, skipped for
    the platform's own address (PUBLIC_URL)."""
    if "host_tenant" not in g:
        config: Settings = current_app.config["DESKBELL"]
        host = domains.normalize(request.host)
        public = domains.normalize(urlsplit(config.public_url).netloc) if config.public_url else None
        if host is None or host == public:
            g.host_tenant = None
        else:
            with system_session() as db:
                g.host_tenant = domains.tenant_for_host(db, host)
    return g.host_tenant


def _wrong_domain_login(tenant_id: uuid.UUID) -> ResponseReturnValue | None:
    """A login on tenant A's domain with the email of someone of another tenant: answered, counted and audited
    as a wrong password (web/auth's refuse_login), without looking at the password."""
    from web.auth import refuse_login

    email = request.form.get("email", "").strip().lower()
    with system_session() as db:
        user = db.scalar(select(User).where(func.lower(User.email) == email))
    if user is None or user.tenant_id == tenant_id:
        return None
    return refuse_login(user, email, reason="domain", host=request.host)


def _on_its_domain() -> ResponseReturnValue | None:
    config: Settings = current_app.config["DESKBELL"]
    if config.deployment_mode != "saas" or request.endpoint in OPEN_ENDPOINTS or request.path.startswith("/api/"):
        return None
    if request.endpoint == "auth.login" and request.method == "POST":
        tenant_id = host_tenant()
        return _wrong_domain_login(tenant_id) if tenant_id is not None else None
    if not current_user.is_authenticated:
        return None
    tenant = g.get("tenant")  # read with the user by the user loader (web/__init__.py)
    if tenant is not None and tenant.id == current_user.tenant_id and tenant.domain == domains.normalize(request.host):
        return None  # on the user's own domain: no query
    tenant_id = host_tenant()
    if tenant_id is None or tenant_id == current_user.tenant_id:
        return None
    from web.admin.guard import refused

    return refused(ELSEWHERE, title="Another organisation's address")


def install(app: Flask) -> None:
    app.before_request(_on_its_domain)
