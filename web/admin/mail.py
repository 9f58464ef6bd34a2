"""Email settings (docs/admin.md, "Email"): the tenant's outgoing mail server, and a test email to check it.

    GET  /admin/mail        the form (the password is never shown: empty keeps the saved one)
    POST /admin/mail        save
    POST /admin/mail/test   send a test email to the logged-in admin, through the same client and circuit
                            breaker as the mailer; 303 to the page, which says what the server answered
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from desk import mail, mail_settings
from desk.actions.admin import ActionError
from desk.models import MailDelivery, MailSettings
from desk.settings import Settings
from web.admin import admin_session, done, page
from web.admin.roles import client, requires

bp = Blueprint("admin_mail", __name__, url_prefix="/admin/mail")
RECENT = 20


def _form(stored: MailSettings | None) -> dict[str, Any]:
    if stored is None:
        return {"host": "", "port": 587, "security": "starttls", "username": "", "from_address": "", "from_name": ""}
    return {name: getattr(stored, name) for name in mail_settings.FIELDS}


def _page(status: int = 200, error: str | None = None, form: dict[str, Any] | None = None, **extra: Any) -> Any:
    config: Settings = current_app.config["DESKBELL"]
    with admin_session() as (session, _actor):
        stored = mail_settings.of_tenant(session)
        recent = list(session.scalars(select(MailDelivery).order_by(MailDelivery.id.desc()).limit(RECENT)))
        return page(
            "admin/mail.html",
            status,
            form=form or _form(stored),
            has_password=bool(stored and stored.password_encrypted),
            securities=mail_settings.SECURITY,
            error=error,
            recent=recent,
            inbound_domain=config.mail.inbound_domain,
            **extra,
        )


@bp.get("")
@requires("admin", "owner")
def settings() -> ResponseReturnValue:
    return _page()


@bp.post("")
@requires("admin", "owner")
def save() -> ResponseReturnValue:
    config: Settings = current_app.config["DESKBELL"]
    with admin_session() as (session, actor):
        try:
            mail_settings.do_save_mail_settings(session, actor, client(), request.form.to_dict(), config.secret_key)
        except ActionError as exc:
            session.rollback()
            form = {k: v for k, v in request.form.to_dict().items() if k != "password"}
            return _page(exc.status, exc.message, form)
    return done("Email settings saved.", "admin_mail.settings")


@bp.post("/test")
@requires("admin", "owner")
def test() -> ResponseReturnValue:
    """Send a test email to the admin now (a request that waits at most the SMTP timeout)."""
    config: Settings = current_app.config["DESKBELL"]
    with admin_session() as (session, _actor):
        smtp = mail_settings.config_of(session, config.secret_key)
    # Whatever happens, the answer is the page with what happened: a failed test is news, not a refused change.
    if smtp is None:
        return done("Save the mail server's settings first (or enter the password again).", "admin_mail.settings")
    message_id = f"<deskbell.test.{uuid.uuid4().hex}@{config.mail.inbound_domain}>"
    email = mail.message(
        smtp,
        [current_user.email],
        "Deskbell test email",
        "Your Deskbell can send email: replies to visitors, transcripts and missed-chat alerts will arrive.\n",
        message_id,
    )
    try:
        mail.send(smtp, email, config.mail)
    except Exception as exc:  # whatever the server said (or the breaker), the admin reads it
        return done(f"The test email was not sent: {exc}", "admin_mail.settings")
    return done(f"A test email was sent to {current_user.email}.", "admin_mail.settings")
