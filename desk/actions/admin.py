"""What the admin actions share (docs/admin.md): their errors, the audit entry each change writes, text checks,
and the tenant's settings (desk/tenant_settings.py validates them).

The admin's actions live by subject beside this module: sites.py, agents.py (invites, roles, deactivation),
teams.py (teams and business hours), labels.py, api_keys.py, platform.py (SaaS tenants). Each takes the acting
user (loaded in the caller's tenant session) and the request's `audit.Client`, checks the rules, records the
change in the audit log, and commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from desk import audit, tenant_settings
from desk.actions.conversations import ActionError, Conflict, Forbidden, Invalid, NotFound
from desk.models import Tenant, User
from desk.protocol import storable

__all__ = ["ActionError", "Conflict", "Forbidden", "Invalid", "NotFound", "MANAGERS", "ROLE_NAMES"]

MANAGERS = ("admin", "owner")
# The roles an admin page offers, with what each may do (docs/admin.md, "Roles").
ROLE_NAMES = {"agent": "Agent", "admin": "Admin", "owner": "Owner", "operator": "Platform operator"}


def record(
    session: Session,
    actor: User,
    client: audit.Client,
    action: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    **detail: Any,
) -> None:
    """The audit entry of one change by `actor` in their tenant, added to the session the change commits in."""
    audit.record(
        session,
        tenant_id=actor.tenant_id,
        actor_id=actor.id,
        action=action,
        client=client,
        before=before,
        after=after,
        **detail,
    )


def text(value: str | None, what: str, max_chars: int, required: bool = True) -> str:
    """A single line of text from a form, trimmed; Invalid when missing, too long or unstorable."""
    cleaned = " ".join((value or "").split())
    if required and not cleaned:
        raise Invalid(f"{what} is required.")
    if len(cleaned) > max_chars:
        raise Invalid(f"{what} may be at most {max_chars} characters.")
    if not storable(cleaned):
        raise Invalid(f"{what} contains characters that cannot be stored.")
    return cleaned


# Keys of a settings section that another page edits (desk/actions/rules.py), kept when the section's form is saved.
OWN_PAGES = {"routing": ("rules",)}


def do_update_settings(
    session: Session, actor: User, client: audit.Client, section: str, form: dict[str, Any]
) -> dict[str, Any]:
    """Replace one section of the tenant's settings with the validated form (but for what other pages edit).
    Commits; returns the section.

    The console's address ranges must include the address the admin saves them from: a list that would lock
    them out is refused (they could not come back to fix it).
    """
    if section not in tenant_settings.PARSERS:
        raise NotFound("No such settings section.")
    try:
        values = tenant_settings.PARSERS[section](form)
    except tenant_settings.InvalidSetting as exc:
        raise Invalid(str(exc)) from None
    networks = values.get("console_networks")
    if networks and not tenant_settings.allows(networks, client.ip):
        raise Invalid(
            f"Your own address ({client.ip}) is outside these ranges: saving them would lock you out. "
            "Add a range that includes it."
        )
    tenant = session.get(Tenant, actor.tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound("No such tenant.")
    current = tenant_settings.effective(tenant.settings)[section]
    # The routing rules have a page of their own: the routing form never carries them.
    stored = (tenant.settings or {}).get(section, {})
    values = {**{k: stored[k] for k in OWN_PAGES.get(section, ()) if k in stored}, **values}
    tenant.settings = {**(tenant.settings or {}), section: values}
    record(session, actor, client, f"settings.{section}", before=current, after=values)
    session.commit()
    return values
