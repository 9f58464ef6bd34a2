"""Tenants, as the SaaS platform's operators manage them (docs/admin.md, "SaaS mode"): create (the bootstrap
action), suspend, resume, delete. Run in a system session: these cross tenants by nature. Operators see counts,
never conversation contents.

A suspended tenant keeps its data; its people cannot log in, its open sessions are refused, and its widgets get
no visitor session (web/widget_api). Deleting a tenant deletes all its rows (foreign keys cascade); its audit
entry is kept as an installation event (no tenant), so the record outlives the tenant.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from desk import audit
from desk.actions.admin import Conflict, Forbidden, Invalid, NotFound, text
from desk.actions.agents import EMAIL, PLATFORM_SLUG
from desk.actions.tenants import Bootstrapped, do_bootstrap_tenant
from desk.models import Site, Tenant, User

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")
STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class TenantRow:
    id: uuid.UUID
    name: str
    slug: str
    status: str
    domain: str | None
    created_at: datetime
    users: int
    sites: int


def tenants(session: Session) -> list[TenantRow]:
    """Every tenant with how many people and sites it has, newest first."""
    users = select(func.count()).where(User.tenant_id == Tenant.id).correlate(Tenant).scalar_subquery()
    sites = select(func.count()).where(Site.tenant_id == Tenant.id).correlate(Tenant).scalar_subquery()
    rows = session.execute(select(Tenant, users, sites).order_by(Tenant.created_at.desc()))
    return [TenantRow(t.id, t.name, t.slug, t.status, t.domain, t.created_at, u, s) for t, u, s in rows]


def _tenant(session: Session, tenant_id: uuid.UUID) -> Tenant:
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound("No such tenant.")
    return tenant


def _record(session: Session, operator: User, client: audit.Client, action: str, tenant: Tenant, **kw: object) -> None:
    # In the operator's own (platform) tenant's log: a deleted tenant's log goes with it.
    audit.record(
        session,
        tenant_id=operator.tenant_id,
        actor_id=operator.id,
        action=action,
        client=client,
        tenant=tenant.slug,
        **kw,
    )


def do_create_tenant(
    session: Session, operator: User, client: audit.Client, slug: str, name: str, owner_email: str
) -> Bootstrapped:
    """A tenant with its first site and owner (whose password is shown once). Commits."""
    slug = slug.strip().lower()
    if not SLUG.fullmatch(slug) or slug == PLATFORM_SLUG:
        raise Invalid("A short name is 2 to 64 of a–z, 0–9 and -, starting with a letter or digit (not 'platform').")
    owner_email = owner_email.strip().lower()
    if not EMAIL.fullmatch(owner_email):
        raise Invalid("Enter the owner's email address.")
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f"There is a tenant {slug!r} already.")
    if session.scalar(select(User.id).where(func.lower(User.email) == owner_email)) is not None:
        raise Conflict(f"{owner_email} already has an account.")
    result = do_bootstrap_tenant(
        session,
        slug=slug,
        name=text(name, "Name", 200),
        owner_email=owner_email,
        site_name="Website",
        allowed_origins=[],
    )
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    assert tenant is not None
    _record(
        session,
        operator,
        client,
        "platform.tenant_create",
        tenant,
        after={"slug": slug, "name": tenant.name, "owner": owner_email},
    )
    session.commit()
    return result


def do_set_status(session: Session, operator: User, client: audit.Client, tenant_id: uuid.UUID, status: str) -> Tenant:
    if status not in STATUSES:
        raise Invalid("A tenant is active or suspended.")
    tenant = _tenant(session, tenant_id)
    if tenant.id == operator.tenant_id:
        raise Forbidden("The platform's own tenant cannot be suspended.")
    if tenant.status != status:
        before = {"status": tenant.status}
        tenant.status = status
        action = "platform.tenant_suspend" if status == "suspended" else "platform.tenant_resume"
        _record(session, operator, client, action, tenant, before=before, after={"status": status})
    session.commit()
    return tenant


def do_delete_tenant(
    session: Session, actor: User, client: audit.Client, tenant_id: uuid.UUID, confirmation: str
) -> None:
    """Delete a tenant and everything in it; `confirmation` must be its short name, typed. Commits.

    For an operator deleting another tenant, or an owner deleting their own (SaaS mode only: the caller checks).
    """
    tenant = _tenant(session, tenant_id)
    if tenant.slug == PLATFORM_SLUG:
        raise Forbidden("The platform's own tenant cannot be deleted.")
    if confirmation.strip() != tenant.slug:
        raise Invalid(f"Type the tenant's short name, {tenant.slug}, to confirm.")
    by_owner = actor.tenant_id == tenant.id
    audit.record(
        session,
        tenant_id=None if by_owner else actor.tenant_id,
        actor_id=None if by_owner else actor.id,
        action="tenant.delete",
        client=client,
        tenant=tenant.slug,
        by=actor.email,
    )
    session.delete(tenant)
    session.commit()
