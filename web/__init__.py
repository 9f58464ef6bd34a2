"""The Flask app factory: the agent console, the widget's HTTP API and health, rendered server-side.

web/asgi.py mounts this app beside the socket edge (web/edge/) in one ASGI application.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Flask
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from desk import __version__, settings
from desk.bus import SyncBus
from desk.db import system_session
from desk.models import User
from desk.settings import ROOT

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"


@login_manager.user_loader
def _load_user(user_id: str) -> Any:
    from web.auth import SessionUser

    # The session cookie names the user; the tenant comes from that user's row.
    with system_session() as session:
        user = session.get(User, uuid.UUID(user_id))
    return SessionUser(user) if user is not None and user.is_active else None


def _hhmm(value: datetime | str | None) -> str:
    """A message or activity time as HH:MM (UTC for now; the console shows local time in a later issue)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%H:%M")


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

    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions["deskbell.bus"] = SyncBus(config.nats_url, "web") if config.nats_url else None

    from web import health, security, vendor
    from web.agent import bp as agent_bp
    from web.auth import bp as auth_bp
    from web.widget_api import bp as widget_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(agent_bp)
    csrf.exempt(widget_bp)  # visitors carry a signed token, never a cookie
    app.register_blueprint(widget_bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(vendor.bp)
    security.install(app)
    return app
