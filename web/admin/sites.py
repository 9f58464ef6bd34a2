"""Sites: list, create, edit (name, allowed origins, the widget's look), proactive invitations, rotate the identity
secret, and the embed snippet to copy (docs/admin.md, "Sites"; docs/widget.md, "Invitations")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from desk import audit, widget_settings
from desk.actions import sites as act
from desk.actions.admin import ActionError, record
from desk.models import Site
from desk.settings import Settings
from web.admin import admin_session, bp, done, page, parse_id
from web.admin.roles import client, requires


def snippet(site: Site) -> str:
    """The tag a site puts on its pages: widget.js from PUBLIC_URL, else from the host this page came from."""
    config: Settings = current_app.config["DESKBELL"]
    base = config.public_url or request.host_url.rstrip("/")
    return f'<script src="{base}/widget.js" data-site="{site.site_key}" async></script>'


def site_form(site: Site | None) -> dict[str, str]:
    if site is None:
        return {"color": widget_settings.DEFAULTS["color"], "position": "right"}
    look = widget_settings.effective(site.widget)
    return {
        "name": site.name,
        "allowed_origins": "\n".join(site.allowed_origins),
        "color": look["color"],
        "position": look["position"],
        **{f"welcome_{lang}": text for lang, text in look["welcome"].items()},
    }


def prechat_form(prechat: dict[str, Any] | None) -> dict[str, str]:
    """The pre-chat form's fields as the site form shows them (desk/widget_settings.py, `parse_prechat`)."""
    prechat = prechat or {}
    return {
        "prechat_enabled": "on" if prechat.get("enabled") else "",
        "prechat_name": prechat.get("name") or "off",
        "prechat_email": prechat.get("email") or "off",
        "prechat_options": "\n".join(prechat.get("options") or []),
        **{f"prechat_question_{lang}": text for lang, text in (prechat.get("question") or {}).items()},
    }


@bp.route("/sites", methods=["GET", "POST"])
@requires("admin", "owner")
def sites() -> ResponseReturnValue:
    with admin_session() as (session, actor):
        if request.method == "POST":
            try:
                site = act.do_create_site(session, actor, client(), request.form.to_dict())
            except ActionError as exc:
                found = list(session.scalars(select(Site).order_by(Site.created_at)))
                return page("admin/sites.html", exc.status, sites=found, form=request.form, error=exc.message)
            return done(f"Site {site.name} created. Put its snippet on your pages.", "admin.site", site_id=site.id)
        found = list(session.scalars(select(Site).order_by(Site.created_at)))
    return page("admin/sites.html", sites=found, form=site_form(None), error=None)


def _site_page(
    site: Site, form: dict[str, str], error: str | None = None, status: int = 200, invitation_form: Any = None
) -> ResponseReturnValue:
    return page(
        "admin/site.html",
        status,
        site=site,
        form={**prechat_form((site.widget or {}).get("prechat")), **form},  # the form's fields over the saved ones
        error=error,
        snippet=snippet(site),
        languages=widget_settings.LANGUAGES,
        positions=widget_settings.POSITIONS,
        prechat_modes=widget_settings.PRECHAT_MODES,
        prechat_limits=(*widget_settings.PRECHAT_OPTIONS, widget_settings.PRECHAT_OPTION_CHARS),
        invitations=widget_settings.invitations_of(site.widget),
        invitation_form=invitation_form or {"match": "starts", "seconds": "30", "on": "on"},
        matches=widget_settings.MATCHES,
        limits=widget_settings,
    )


@bp.route("/sites/<site_id>", methods=["GET", "POST"])
@requires("admin", "owner")
def site(site_id: str) -> ResponseReturnValue:
    with admin_session() as (session, actor):
        found = session.get(Site, parse_id(site_id))
        if found is None:
            return page("admin/refused.html", 404, title="Not found", message="No such site.")
        if request.method == "POST":
            try:
                act.do_update_site(session, actor, client(), found.id, request.form.to_dict())
            except ActionError as exc:
                session.rollback()
                return _site_page(session.get(Site, found.id), request.form.to_dict(), exc.message, exc.status)
            return done("Site saved.", "admin.site", site_id=found.id)
        return _site_page(found, site_form(found))


@bp.post("/sites/<site_id>/prechat")
@requires("admin", "owner")
def site_prechat(site_id: str) -> ResponseReturnValue:
    """The pre-chat form's settings (docs/widget.md, "Pre-chat form"), audited as a change of the site."""
    form = request.form.to_dict()
    with admin_session() as (session, actor):
        found = session.get(Site, parse_id(site_id))
        if found is None:
            return page("admin/refused.html", 404, title="Not found", message="No such site.")
        before = audit.snapshot(found, act.FIELDS)
        try:
            prechat = widget_settings.parse_prechat(form)
        except widget_settings.InvalidSetting as exc:
            shown = {**site_form(found), **{k: v for k, v in form.items() if k.startswith("prechat_")}}
            shown["prechat_enabled"] = form.get("prechat_enabled", "")  # an unticked box is not in the form
            message = str(exc)[:1].upper() + str(exc)[1:] + "."
            return _site_page(found, shown, message, 400)
        widget = {k: v for k, v in (found.widget or {}).items() if k != "prechat"}
        found.widget = {**widget, "prechat": prechat} if prechat else widget
        after = audit.snapshot(found, act.FIELDS)
        if after != before:
            changed = {"before": before, "after": after, "site_id": found.id, "name": found.name}
            record(session, actor, client(), "site.update", **changed)
        session.commit()
    return done("Pre-chat form saved.", "admin.site", site_id=site_id)


@bp.post("/sites/<site_id>/rotate")
@requires("admin", "owner")
def rotate_secret(site_id: str) -> ResponseReturnValue:
    with admin_session() as (session, actor):
        try:
            act.do_rotate_identity_secret(session, actor, client(), parse_id(site_id))
        except ActionError as exc:
            return page("admin/refused.html", exc.status, title="Not found", message=exc.message)
    return done(
        "New identity secret. Identity hashes made with the old one no longer identify visitors: update your server.",
        "admin.site",
        site_id=site_id,
    )


# -- proactive invitations (docs/widget.md, "Invitations") ----------------------------------------------------------


def _change_invitations(
    site_id: str, change: Callable[[dict[str, Any]], dict[str, Any]], message: str
) -> ResponseReturnValue:
    """Apply `change` to the site's widget settings, audited as a site change like the Settings form's."""
    form = request.form.to_dict()
    with admin_session() as (session, actor):
        site = session.get(Site, parse_id(site_id))
        if site is None:
            return page("admin/refused.html", 404, title="Not found", message="No such site.")
        before = audit.snapshot(site, act.FIELDS)
        try:
            site.widget = change(dict(site.widget or {}))
        except widget_settings.InvalidSetting as exc:
            session.rollback()
            error = str(exc)[:1].upper() + str(exc)[1:] + "."
            return _site_page(session.get(Site, site.id), site_form(site), error, 400, form)
        after = audit.snapshot(site, act.FIELDS)
        if after != before:
            record(session, actor, client(), "site.update", before=before, after=after, site_id=site.id, name=site.name)
        session.commit()
    return done(message, "admin.site", site_id=site_id, _anchor="invitations")


@bp.post("/sites/<site_id>/invitations")
@requires("admin", "owner")
def add_invitation(site_id: str) -> ResponseReturnValue:
    def add(stored: dict[str, Any]) -> dict[str, Any]:
        rule = widget_settings.parse_invitation(request.form.to_dict())
        return widget_settings.with_invitations(stored, [*widget_settings.invitations_of(stored)["rules"], rule])

    return _change_invitations(site_id, add, "Invitation added.")


def _rules_changed(
    site_id: str, rule_id: str, edit: Callable[[dict[str, Any]], dict[str, Any]] | None, message: str
) -> ResponseReturnValue:
    """`edit` applied to the rule `rule_id`, or no `edit`: delete it (one already gone is done: a second click)."""

    def change(stored: dict[str, Any]) -> dict[str, Any]:
        rules = widget_settings.invitations_of(stored)["rules"]
        if not any(r.get("id") == rule_id for r in rules):
            if edit is None:
                return stored
            raise widget_settings.InvalidSetting("no such invitation: it may have been deleted")
        if edit is None:
            return widget_settings.with_invitations(stored, [r for r in rules if r.get("id") != rule_id])
        return widget_settings.with_invitations(stored, [edit(r) if r.get("id") == rule_id else r for r in rules])

    return _change_invitations(site_id, change, message)


# `<rule>`, not `<rule_id>`: a rule is a key inside the site's settings, not a row (tests/security walk `*_id`s).
@bp.post("/sites/<site_id>/invitations/<rule>/delete")
@requires("admin", "owner")
def delete_invitation(site_id: str, rule: str) -> ResponseReturnValue:
    return _rules_changed(site_id, rule, None, "Invitation deleted.")


@bp.post("/sites/<site_id>/invitations/<rule>/switch")
@requires("admin", "owner")
def switch_invitation(site_id: str, rule: str) -> ResponseReturnValue:
    on = request.form.get("on") == "on"
    message = "Invitation turned on." if on else "Invitation turned off."
    return _rules_changed(site_id, rule, lambda found: {**found, "on": on}, message)


@bp.post("/sites/<site_id>/invitation-caps")
@requires("admin", "owner")
def invitation_caps(site_id: str) -> ResponseReturnValue:
    def change(stored: dict[str, Any]) -> dict[str, Any]:
        caps = widget_settings.parse_caps(request.form.to_dict())
        return widget_settings.with_invitations(stored, widget_settings.invitations_of(stored)["rules"], caps)

    return _change_invitations(site_id, change, "Invitation limits saved.")
