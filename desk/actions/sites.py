"""Sites (docs/admin.md, "Sites"): a name, the browser origins allowed to open the widget, the widget's look
(desk/widget_settings.py) and the identity secret that proves a visitor's identity (rotated on demand)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from desk import audit, widget_settings
from desk.actions.admin import Invalid, NotFound, record, text
from desk.models import Site, User

SITE_NAME_CHARS = 200
ORIGINS_MAX = 50
FIELDS = ("name", "allowed_origins", "widget")


def parse_origins(value: str) -> list[str]:
    """Origins one a line (or comma-separated), as `scheme://host[:port]` without a path."""
    origins: list[str] = []
    for part in (p.strip() for p in value.replace(",", "\n").splitlines()):
        if not part:
            continue
        parsed = urlsplit(part)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
            raise Invalid(f"Not an origin (like https://shop.example.com): {part!r}")
        if parsed.query or parsed.fragment or parsed.username:
            raise Invalid(f"An origin has no path, query or user: {part!r}")
        origin = f"{parsed.scheme}://{parsed.netloc.lower()}"
        if origin not in origins:
            origins.append(origin)
    if len(origins) > ORIGINS_MAX:
        raise Invalid(f"At most {ORIGINS_MAX} origins.")
    return origins


def parse_widget(form: dict[str, Any]) -> dict[str, Any]:
    """The widget's settings from the form's welcome_en, welcome_zh, color and position fields."""
    welcome = {
        lang: form[f"welcome_{lang}"].strip() for lang in widget_settings.LANGUAGES if form.get(f"welcome_{lang}")
    }
    welcome = {lang: value for lang, value in welcome.items() if value}
    try:
        return widget_settings.parse(welcome, form.get("color") or None, form.get("position") or None)
    except widget_settings.InvalidSetting as exc:
        raise Invalid(str(exc)) from None


def _site(session: Session, site_id: uuid.UUID) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound("No such site.")
    return site


def do_create_site(session: Session, actor: User, client: audit.Client, form: dict[str, Any]) -> Site:
    site = Site(
        name=text(form.get("name"), "Name", SITE_NAME_CHARS),
        allowed_origins=parse_origins(form.get("allowed_origins", "")),
        widget=parse_widget(form),
    )
    session.add(site)
    session.flush()
    record(session, actor, client, "site.create", after=audit.snapshot(site, FIELDS), site_id=site.id)
    session.commit()
    return site


def do_update_site(
    session: Session, actor: User, client: audit.Client, site_id: uuid.UUID, form: dict[str, Any]
) -> Site:
    site = _site(session, site_id)
    before = audit.snapshot(site, FIELDS)
    site.name = text(form.get("name"), "Name", SITE_NAME_CHARS)
    site.allowed_origins = parse_origins(form.get("allowed_origins", ""))
    # The form shows every widget setting, so what it leaves empty goes back to the default; the pre-chat form
    # and the invitations have forms of their own.
    kept = {k: v for k, v in (site.widget or {}).items() if k in ("prechat", "invitations")}
    site.widget = {**kept, **parse_widget(form)}
    after = audit.snapshot(site, FIELDS)
    if after != before:
        record(session, actor, client, "site.update", before=before, after=after, site_id=site.id, name=site.name)
    session.commit()
    return site


def do_rotate_identity_secret(session: Session, actor: User, client: audit.Client, site_id: uuid.UUID) -> Site:
    """A new identity secret: hashes made with the old one stop proving visitors' identities at once."""
    site = _site(session, site_id)
    before = {"identity_secret": site.identity_secret}
    site.identity_secret = secrets.token_urlsafe(32)
    # Recorded as "(changed)" on both sides: desk/audit.py never writes a secret's value.
    record(
        session,
        actor,
        client,
        "site.rotate_identity_secret",
        before=before,
        after={"identity_secret": site.identity_secret},
        site_id=site.id,
        name=site.name,
    )
    session.commit()
    return site
