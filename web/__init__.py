"""The Flask app factory: the agent console, the widget's HTTP API and health, rendered server-side.

web/asgi.py mounts this app beside the socket edge (web/edge/) in one ASGI application.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from flask_login import LoginManager
from flask_wtf import CSRFProtect
from markupsafe import Markup, escape
from sqlalchemy import select

from desk import __version__, attachments, logs, settings
from desk.bus import SyncBus
from desk.db import system_session
from desk.models import Tenant, User
from desk.settings import ROOT

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"


@login_manager.user_loader
def _load_user(user_id: str) -> Any:
    from web.auth import SessionUser

    # The session cookie names the user; the tenant comes from that user's row. The tenant is read in the same
    # query and kept for the request (web/admin/guard.py checks it), so a page costs one round trip less.
    with system_session() as session:
        found = session.execute(
            select(User, Tenant).join(Tenant, Tenant.id == User.tenant_id).where(User.id == uuid.UUID(user_id))
        ).first()
    if found is None or not found.User.is_active:
        return None
    g.tenant = found.Tenant
    g.presence = found.User.presence  # as of the request's start, for the console's presence picker
    return SessionUser(found.User)


def _hhmm(value: datetime | str | None) -> str:
    """A message or activity time as HH:MM (UTC for now; the console shows local time in a later issue)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%H:%M")


_ATTACHMENT_PATH = r"/attachments/[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}/([A-Za-z0-9_-][A-Za-z0-9._-]*)"
_IMAGE_EXTENSIONS = {attachments.EXTENSIONS[t] for t in attachments.IMAGE_TYPES}


def _message_body(body: str) -> Markup:
    """A message's text, escaped, with links to attachments on this host as links named by the file, and an
    attachment that is an image (its extension was set from its content at upload) as a small thumbnail."""
    config: settings.Settings = current_app.config["DESKBELL"]
    # Outside a request (the console's live stream renders in the ASGI edge) the edge sets g.host_url.
    here = (request.host_url if has_request_context() else g.get("host_url", "")).rstrip("/")
    bases = {b for b in (here, config.public_url) if b}
    if not bases:
        return escape(body)
    pattern = re.compile("(?:" + "|".join(re.escape(b) for b in bases) + ")" + _ATTACHMENT_PATH)
    parts: list[str] = []
    last = 0
    for match in pattern.finditer(body):
        url, name = match.group(0), match.group(1)
        parts.append(escape(body[last : match.start()]))
        link = Markup('<a class="attachment" href="{}" target="_blank" rel="noopener noreferrer">{}</a>')
        parts.append(link.format(url, name))
        if name.rsplit(".", 1)[-1] in _IMAGE_EXTENSIONS:
            parts.append(Markup('<img class="thumb" src="{}" alt="{}" loading="lazy">').format(url, name))
        last = match.end()
    parts.append(escape(body[last:]))
    return Markup("").join(parts)


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    config = settings.load()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder="static")
    app.config.update(
        SECRET_KEY=config.secret_key,
        DESKBELL=config,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not config.development,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1024 * 1024,
        NODE_MODULES=ROOT / "node_modules",
    )
    app.config.update(overrides or {})
    app.jinja_env.globals["version"] = __version__
    app.jinja_env.filters["hhmm"] = _hhmm
    app.jinja_env.filters["message_body"] = _message_body

    @app.before_request
    def _request_id() -> None:
        g.request_id = logs.request_id(request.headers.get("X-Request-ID"))
        g.request_id_token = logs.REQUEST_ID.set(g.request_id)

    @app.after_request
    def _say_request_id(response: Any) -> Any:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        # Flask's threads serve request after request: the next one must not log under this id.
        token = g.pop("request_id_token", None)  # once: a streamed response tears down twice
        if token is not None:
            logs.REQUEST_ID.reset(token)

    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions["deskbell.bus"] = SyncBus(config.nats_url, "web") if config.nats_url else None
    if config.nats_url:  # deactivating, signing out, suspending: live connections end at the commit
        from web.edge import access

        access.watch(app.extensions["deskbell.bus"].publish_event)

    from web import admin, health, metrics, security, vendor
    from web.admin.export import bp as admin_export_bp
    from web.agent import bp as agent_bp
    from web.auth import bp as auth_bp
    from web.widget_api import bp as widget_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(agent_bp)
    csrf.exempt(widget_bp)  # visitors carry a signed token, never a cookie
    app.register_blueprint(widget_bp)
    from web.api import bp as api_bp

    csrf.exempt(api_bp)  # server-to-server: every request is signed with an API key (web/api/auth.py)
    app.register_blueprint(api_bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(vendor.bp)
    app.register_blueprint(admin_export_bp)  # an admin's download of conversations (web/admin/export.py)
    from web.admin.mail import bp as admin_mail_bp

    app.register_blueprint(admin_mail_bp)  # the tenant's mail server and a test email (web/admin/mail.py)
    metrics.install(app)
    security.install(app)
    admin.install(app)  # the admin and platform pages, and the tenant's rules on every request (docs/admin.md)
    from web import domains

    domains.install(app)  # SaaS: on a tenant's own domain, only its people (docs/admin.md, "Per-tenant domains")
    return app
