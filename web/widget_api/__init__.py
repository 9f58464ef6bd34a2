"""The widget's HTTP side: `POST /api/v1/widget/session` (docs/protocol.md, step 1), widget.js and the demo page.

Visitors carry a signed token, not a cookie, so these routes are exempt from CSRF; browsers are judged by Origin.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_from_directory
from flask.typing import ResponseReturnValue
from sqlalchemy import bindparam, select, true
from sqlalchemy.orm import aliased
from werkzeug.exceptions import HTTPException

from desk import tokens, visitor_context, widget_settings
from desk.actions.hours import schedule_query
from desk.db import system_session, tenant_session
from desk.models import Schedule, Site, Tenant
from desk.protocol import storable
from desk.queries.agents import online_agent
from desk.settings import Settings
from web.edge import abuse

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
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"  # the widget waits that long on a 429
        response.headers["Vary"] = "Origin"
    return response


def _session_limiter(config: Settings) -> abuse.Buckets | None:
    """This app's count of new sessions per address, in memory (web/edge/abuse.py)."""
    key = "deskbell.session_limiter"
    if key not in current_app.extensions:
        current_app.extensions.setdefault(key, abuse.session_limiter(config.limits))
    return current_app.extensions[key]


# site_key → the tenant of its site, learnt once per process: which tenant's transaction reads the site. Only a
# fact that never changes (a site keeps its key and its tenant) is kept; the site itself, its origins and the
# tenant's status are read on every request. Bounded: emptied when full (keys that exist only; an unknown key is
# looked up every time, as before).
_SITE_TENANTS: dict[str, uuid.UUID] = {}
SITE_TENANTS_MAX = 10_000


def _site_tenant(site_key: str) -> uuid.UUID | None:
    """The tenant of the site with this key (remembered once found), or None when no site has it."""
    tenant_id = _SITE_TENANTS.get(site_key)
    if tenant_id is None:
        with system_session() as session:
            tenant_id = session.scalar(select(Site.tenant_id).where(Site.site_key == site_key))
        if tenant_id is None:
            return None
        if len(_SITE_TENANTS) >= SITE_TENANTS_MAX:
            _SITE_TENANTS.clear()
        _SITE_TENANTS[site_key] = tenant_id
    return tenant_id


# The site with the key `site_key`, its tenant's status and settings, whether an agent is online and the tenant's
# default business hours (None when it has none): one statement, built once, for every session request (issue 10).
_DEFAULT_SCHEDULE = aliased(Schedule, schedule_query(None).lateral())
_SITE_AND_TENANT = (
    select(Site, Tenant.status, Tenant.settings, online_agent().exists(), _DEFAULT_SCHEDULE)
    .join(Tenant, Tenant.id == Site.tenant_id)
    .outerjoin(_DEFAULT_SCHEDULE, true())
    .where(Site.site_key == bindparam("site_key"))
)


@bp.route("/api/v1/widget/session", methods=["OPTIONS"])
def session_preflight() -> ResponseReturnValue:
    return "", 204


@bp.post("/api/v1/widget/session")
def create_session() -> ResponseReturnValue:
    """Start or resume a visitor: returns a token for the socket. An invalid earlier token starts a new visitor."""
    config: Settings = current_app.config["DESKBELL"]
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return _error(400, "invalid_json", "body must be a JSON object")
    site_key = data.get("site_key")
    # Text PostgreSQL cannot hold (a NUL, a lone surrogate) is refused here, not left to fail the query (a 500).
    if not isinstance(site_key, str) or not site_key or not storable(site_key):
        return _error(400, "invalid_site_key", "site_key is required")
    try:
        identity = visitor_context.parse_identity(data.get("identity"))
        client = visitor_context.parse_client(data)
        email = visitor_context.parse_email(data.get("email"))
        attributes = visitor_context.parse_attributes(data.get("attributes"))
    except visitor_context.InvalidField as exc:
        return _error(400, exc.code, exc.message)
    tenant_id = _site_tenant(site_key)
    if tenant_id is None:
        return _error(404, "unknown_site", "no site has this site_key")
    with tenant_session(tenant_id) as session:
        # What the response says of the site and its tenant, read in the transaction that makes the visitor: one
        # transaction per session request, and as few statements as can be (issue 10).
        found = session.execute(_SITE_AND_TENANT, {"site_key": site_key}).first()
        if found is None:  # the site was deleted since its tenant was remembered
            _SITE_TENANTS.pop(site_key, None)
            return _error(404, "unknown_site", "no site has this site_key")
        site, status, tenant_settings, agents_online, default_schedule = found
        if status == "suspended":  # SaaS: the operator suspended the tenant (docs/admin.md)
            return _error(403, "tenant_suspended", "this chat is not available at the moment")
        if not site.allows_origin(request.headers.get("Origin")):
            return _error(403, "origin_not_allowed", "this page's origin is not allowed for the site")

        max_age = config.limits.visitor_token_days * 86400
        claims = None
        if isinstance(data.get("visitor_token"), str):
            claims = tokens.verify(config.secret_key, data["visitor_token"], max_age)
            if claims is not None and claims.site_id != site.id:
                claims = None  # a token is bound to the site it was issued for
        if claims is None:  # a new visitor: counted per address (a resumed one is not, so reconnecting is free)
            limited = abuse.session_refusal(_session_limiter(config), request.remote_addr)
            if limited is not None:
                response = _error(429, limited.body()["error"], limited.message)
                response.headers["Retry-After"] = str(limited.retry_after)
                return response
        proved = identity if identity and visitor_context.identity_proved(site.identity_secret, identity) else None
        page = visitor_context.parse_page(data.get("page"))
        seen = visitor_context.context(page, client, request.headers.get("User-Agent", ""), request.remote_addr)
        visitor = visitor_context.find_visitor(
            session, site.id, claims.visitor_id if claims else None, proved.external_id if proved else None
        )
        visitor_context.record_visit(visitor, proved, page, seen, email=email, attributes=attributes)
        if email and visitor.email == email:  # left in the chat: replies by email once they have gone (mail)
            _offline.follow_when_away(session, visitor, email)
        # Read before the commit, in the same transaction (they see the visitor as it is about to be committed).
        # Outside hours: a form to leave a message.
        hours = _offline.hours_of(session, visitor, tenant_settings, default_schedule)
        prechat = _prechat.form_for(session, site, visitor)  # what to ask before the chat, or None
        session.commit()
        claims = tokens.VisitorClaims(site.tenant_id, site.id, visitor.id)
    identification: dict[str, Any] = {"identified": proved is not None}
    if identity is not None and proved is None:
        identification["identity_error"] = "hash does not match"
    base = config.public_url or request.host_url.rstrip("/")
    ws_base = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return jsonify(
        visitor_token=tokens.issue(config.secret_key, claims),
        visitor_id=str(claims.visitor_id),
        ws_url=f"{ws_base}/ws/visitor",
        site_name=site.name,
        agents_online=agents_online,
        hours=hours,
        upload_max_bytes=config.limits.upload_bytes,
        widget=widget_settings.effective(site.widget),
        prechat=prechat,
        **identification,
    )


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
from web.widget_api import offline as _offline  # noqa: E402 - offline messages, transcripts, business hours
from web.widget_api import prechat as _prechat  # noqa: E402 - the pre-chat form
