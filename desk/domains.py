"""Per-tenant domains in SaaS mode (docs/admin.md, "Per-tenant domains"): the host name a tenant's people use, and
the tenant a request's host names. Self-hosted installations ignore hosts; web/domains.py applies the rule.

`tenants.domain` is unique; a host is compared without its port, trailing dot or case.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from desk import audit
from desk.actions.admin import Conflict, Invalid, NotFound
from desk.models import Tenant

# RFC 1123 host names: labels of letters, digits and inner hyphens, at least two labels, 253 characters at most.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


def normalize(host: str | None) -> str | None:
    """`Chat.Example.com:443.` → `chat.example.com`; None for what is not a host name (an address, nothing)."""
    if not host:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal, never a tenant's domain
        return None
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    name = name.rstrip(".")
    return name if len(name) <= 253 and HOST_NAME.fullmatch(name) else None


def tenant_for_host(session: Session, host: str | None) -> uuid.UUID | None:
    """The tenant whose domain `host` is, if any (a system session: this is how the tenant is found)."""
    name = normalize(host)
    if name is None:
        return None
    return session.scalar(select(Tenant.id).where(Tenant.domain == name))


def do_set_domain(
    session: Session, tenant_id: uuid.UUID, domain: str | None, client: audit.Client | None = None
) -> str | None:
    """Give the tenant its domain (None or "": none). Refuses a malformed name and one another tenant has.
    Audited in the tenant's log. Commits; returns the stored name."""
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound("No such tenant.")
    name = None
    if domain and domain.strip():
        name = normalize(domain)
        if name is None or ":" in domain:
            raise Invalid("A domain is a host name such as chat.example.com (no scheme, port or path).")
        taken = session.scalar(select(Tenant.id).where(Tenant.domain == name, Tenant.id != tenant_id))
        if taken is not None:
            raise Conflict("Another tenant has that domain.")
    before, tenant.domain = tenant.domain, name
    audit.record(
        session,
        tenant_id=tenant.id,
        actor_id=None,
        action="tenant.domain",
        client=client,
        before={"domain": before},
        after={"domain": name},
    )
    session.commit()
    return name
