"""Creating a tenant with its first site and owner (`deskbell bootstrap`, the demo tenant)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.accounts import hash_password
from desk.models import AuditLog, Site, Tenant, User


@dataclass(frozen=True)
class Bootstrapped:
    tenant_slug: str
    site_key: str
    owner_email: str
    owner_password: str | None  # None when the owner already existed: a password is shown once only
    created: bool


def do_bootstrap_tenant(
    session: Session,
    *,
    slug: str,
    name: str,
    owner_email: str,
    site_name: str,
    allowed_origins: list[str],
    owner_password: str | None = None,
    widget: dict[str, Any] | None = None,
) -> Bootstrapped:
    """Create the tenant, a site and an owner unless the tenant exists; safe to run again. Commits.

    `widget` (desk/widget_settings.py, validated) is merged into the first site's settings, also when the tenant exists.
    """
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is not None:
        site = session.scalar(select(Site).where(Site.tenant_id == tenant.id).order_by(Site.created_at))
        owner = session.scalar(
            select(User).where(User.tenant_id == tenant.id, User.role == "owner").order_by(User.created_at)
        )
        assert site is not None and owner is not None, f"tenant {slug} exists without a site or an owner"
        if widget:
            site.widget = {**site.widget, **widget}
            session.commit()
        return Bootstrapped(slug, site.site_key, owner.email, None, created=False)
    password = owner_password or secrets.token_urlsafe(12)
    tenant = Tenant(name=name, slug=slug)
    session.add(tenant)
    session.flush()
    site = Site(tenant_id=tenant.id, name=site_name, allowed_origins=allowed_origins, widget=widget or {})
    owner = User(
        tenant_id=tenant.id,
        email=owner_email.lower(),
        name="Owner",
        role="owner",
        password_hash=hash_password(password),
    )
    session.add_all([site, owner])
    session.flush()
    session.add(AuditLog(tenant_id=tenant.id, action="tenant.bootstrap", detail={"slug": slug}))
    session.commit()
    return Bootstrapped(slug, site.site_key, owner.email, password, created=True)


def do_create_user(session: Session, *, email: str, name: str, role: str, password: str) -> User:
    """Add an account to the session's tenant. Commits."""
    user = User(email=email.lower(), name=name, role=role, password_hash=hash_password(password))
    session.add(user)
    session.commit()
    return user
