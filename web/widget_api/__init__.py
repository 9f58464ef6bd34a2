"""The widget's HTTP side besides its session request (web/edge/session.py): widget.js, the demo page, and the
pre-chat form, offline messages, transcripts and attachments (the modules imported at the end).

Visitors carry a signed token, not a cookie, so these routes are exempt from CSRF; browsers are judged by Origin.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_from_directory
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from desk.db import system_session
from desk.models import Site, Tenant
from desk.settings import Settings

bp = Blueprint("widget_api", __name__)


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


@bp.errorhandler(HTTPException)
def _json_error(exc: HTTPException) -> Response:
    if isinstance(exc.response, Response):  # abort(_error(...)): it says what is wrong already
        return exc.response
    return _error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")


@bp.after_request
def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and request.path.startswith("/api/v1/widget/") and response.status_code != 403:
        response.headers.update(cors_headers(origin))
    return response


def cors_headers(origin: str) -> dict[str, str]:
    """What a page on `origin` needs to call the widget's API (a 403 gets none: the origin is refused)."""
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Expose-Headers": "Retry-After",  # the widget waits that long on a 429
        "Vary": "Origin",
    }


@bp.get("/widget.js")
def widget_js() -> ResponseReturnValue:
    return send_from_directory(current_app.static_folder, "widget.js", max_age=300)


@bp.get("/demo")
def demo() -> ResponseReturnValue:
    """A page with the widget snippet, to chat with yourself: the first site, or the one `?site_key=` names.
    Development only: in production it would show a tenant's name to anyone."""
    config: Settings = current_app.config["DESKBELL"]
    if not config.development:
        return _error(404, "not_found", "the demo page is served in development only")
    query = select(Site, Tenant).join(Tenant, Tenant.id == Site.tenant_id).order_by(Site.created_at).limit(1)
    if request.args.get("site_key"):
        query = query.where(Site.site_key == request.args["site_key"])
    with system_session() as session:
        row = session.execute(query).first()
    if row is None:
        return _error(404, "no_site", "no site yet: run `deskbell bootstrap`")
    return render_template("widget/demo.html", site=row[0], tenant=row[1])


from web.widget_api import attachments as _attachments  # noqa: E402, F401 - its routes join this blueprint
from web.widget_api import offline as _offline  # noqa: E402, F401 - offline messages, transcripts, business hours
from web.widget_api import prechat as _prechat  # noqa: E402, F401 - the pre-chat form
