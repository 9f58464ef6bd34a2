"""The widget's session request, `POST /api/v1/widget/session` (docs/protocol.md, step 1): start or resume a
visitor, and the token its socket or long-poll opens with.

It is every connecting visitor's first request, so it is served by the edge, not through Flask: a connection storm
spent about a tenth of the web process's time in Flask's request handling, asgiref's WSGI bridge and the thread
hop around them (docs/benchmarks.md, "Connection storm"). Visitors carry a signed token, not a cookie: no CSRF;
browsers are judged by Origin. Its reads and writes run in one transaction on a thread (the ORM is synchronous).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from sqlalchemy import bindparam, select, true
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from desk import logs, metrics, tokens, visitor_context, widget_settings
from desk.actions.hours import schedule_query
from desk.db import system_session, tenant_session
from desk.models import Schedule, Site, Tenant
from desk.protocol import storable
from desk.queries.agents import online_agent
from desk.settings import Settings
from web.edge.abuse import EdgeLimits, capped_body
from web.widget_api import cors_headers, offline, prechat

log = logging.getLogger(__name__)
PATH = "/api/v1/widget/session"
BODY_BYTES = 1024 * 1024  # a fixed limit (docs/protocol.md, "Limits"), as for every request Flask serves

# site_key → the tenant of its site, learnt once per process: which tenant's transaction reads the site. Only a
# fact that never changes (a site keeps its key and its tenant) is kept; the site itself, its origins and the
# tenant's status are read on every request. Bounded: emptied when full (keys that exist only; an unknown key is
# looked up every time).
_SITE_TENANTS: dict[str, uuid.UUID] = {}
SITE_TENANTS_MAX = 10_000

# The site with the key `site_key`, its tenant's status and settings, whether an agent is online and the tenant's
# default business hours (None when it has none): one statement, built once, for every session request (issue 10).
_DEFAULT_SCHEDULE = aliased(Schedule, schedule_query(None).lateral())
_SITE_AND_TENANT = (
    select(Site, Tenant.status, Tenant.settings, online_agent().exists(), _DEFAULT_SCHEDULE)
    .join(Tenant, Tenant.id == Site.tenant_id)
    .outerjoin(_DEFAULT_SCHEDULE, true())
    .where(Site.site_key == bindparam("site_key"))
)


class Refused(Exception):
    """The request ends with this status and `{"error": code, "message": message}`."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


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


def start(
    config: Settings, limits: EdgeLimits, data: dict[str, Any], headers: dict[str, str], address: str | None,
    host_url: str,
) -> dict[str, Any]:
    """The session response for this request body (`headers`: its Origin and User-Agent), or Refused."""
    site_key = data.get("site_key")
    # Text PostgreSQL cannot hold (a NUL, a lone surrogate) is refused here, not left to fail the query (a 500).
    if not isinstance(site_key, str) or not site_key or not storable(site_key):
        raise Refused(400, "invalid_site_key", "site_key is required")
    try:
        identity = visitor_context.parse_identity(data.get("identity"))
        client = visitor_context.parse_client(data)
        email = visitor_context.parse_email(data.get("email"))
        attributes = visitor_context.parse_attributes(data.get("attributes"))
    except visitor_context.InvalidField as exc:
        raise Refused(400, exc.code, exc.message) from None
    tenant_id = _site_tenant(site_key)
    if tenant_id is None:
        raise Refused(404, "unknown_site", "no site has this site_key")
    with tenant_session(tenant_id) as session:
        # What the response says of the site and its tenant, read in the transaction that makes the visitor: one
        # transaction per session request, and as few statements as can be (issue 10).
        found = session.execute(_SITE_AND_TENANT, {"site_key": site_key}).first()
        if found is None:  # the site was deleted since its tenant was remembered
            _SITE_TENANTS.pop(site_key, None)
            raise Refused(404, "unknown_site", "no site has this site_key")
        site, status, tenant_settings, agents_online, default_schedule = found
        if status == "suspended":  # SaaS: the operator suspended the tenant (docs/admin.md)
            raise Refused(403, "tenant_suspended", "this chat is not available at the moment")
        if not site.allows_origin(headers.get("origin")):
            raise Refused(403, "origin_not_allowed", "this page's origin is not allowed for the site")

        claims = None
        if isinstance(data.get("visitor_token"), str):
            claims = tokens.verify(config.secret_key, data["visitor_token"], config.limits.visitor_token_days * 86400)
            if claims is not None and claims.site_id != site.id:
                claims = None  # a token is bound to the site it was issued for
        if claims is None:  # a new visitor: counted per address (a resumed one is not, so reconnecting is free)
            limited = limits.new_session(address)
            if limited is not None:
                raise Refused(429, limited.body()["error"], limited.message, limited.retry_after)
        proved = identity if identity and visitor_context.identity_proved(site.identity_secret, identity) else None
        page = visitor_context.parse_page(data.get("page"))
        seen = visitor_context.context(page, client, headers.get("user-agent", ""), address)
        visitor = visitor_context.find_visitor(
            session, site.id, claims.visitor_id if claims else None, proved.external_id if proved else None
        )
        visitor_context.record_visit(visitor, proved, page, seen, email=email, attributes=attributes)
        if email and visitor.email == email:  # left in the chat: replies by email once they have gone (mail)
            offline.follow_when_away(session, visitor, email)
        # Read before the commit, in the same transaction (they see the visitor as it is about to be committed).
        # Outside hours: a form to leave a message.
        hours = offline.hours_of(session, visitor, tenant_settings, default_schedule)
        form = prechat.form_for(session, site, visitor)  # what to ask before the chat, or None
        session.commit()
        claims = tokens.VisitorClaims(site.tenant_id, site.id, visitor.id)
    identification: dict[str, Any] = {"identified": proved is not None}
    if identity is not None and proved is None:
        identification["identity_error"] = "hash does not match"
    base = config.public_url or host_url.rstrip("/")
    ws_base = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return {
        "visitor_token": tokens.issue(config.secret_key, claims),
        "visitor_id": str(claims.visitor_id),
        "ws_url": f"{ws_base}/ws/visitor",
        "site_name": site.name,
        "agents_online": agents_online,
        "hours": hours,
        "upload_max_bytes": config.limits.upload_bytes,
        "widget": widget_settings.effective(site.widget),
        "prechat": form,
        **identification,
    }


def _is_json(content_type: str) -> bool:
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to BODY_BYTES (a body without a length is capped too), or Refused."""
    body = await capped_body(request, BODY_BYTES)
    if body is None:
        raise Refused(413, "too_large", f"a session request carries at most {BODY_BYTES} bytes")
    data = None
    if _is_json(request.headers.get("content-type", "")):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than Python parses
            pass
    if not isinstance(data, dict):
        raise Refused(400, "invalid_json", "body must be a JSON object, sent as Content-Type: application/json")
    return data


async def _answer(request: Request) -> tuple[int, dict[str, Any], dict[str, str]]:
    if request.method == "OPTIONS":  # the CORS preflight of a cross-origin widget
        return 204, {}, {}
    if request.method != "POST":
        return 405, {"error": "method_not_allowed", "message": "use POST"}, {"Allow": "POST, OPTIONS"}
    config: Settings = request.app.state.config
    address = request.client.host if request.client else None
    try:
        data = await _body(request)
        wanted = {name: request.headers[name] for name in ("origin", "user-agent") if name in request.headers}
        limits = request.app.state.abuse
        return 200, await asyncio.to_thread(start, config, limits, data, wanted, address, str(request.base_url)), {}
    except Refused as refused:
        retry = {"Retry-After": str(refused.retry_after)} if refused.retry_after is not None else {}
        return refused.status, {"error": refused.code, "message": refused.message}, retry
    except OperationalError:  # PostgreSQL away: the widget tries again
        log.warning("session: PostgreSQL unavailable", exc_info=True)
        return 503, {"error": "unavailable", "message": "service unavailable; retry shortly"}, {"Retry-After": "2"}
    except Exception:
        log.exception("session: failed")
        return 500, {"error": "internal_server_error", "message": "the session could not be started"}, {}


async def session(request: Request) -> Response:
    """`POST /api/v1/widget/session` and its preflight."""
    started = time.monotonic()
    request_id = logs.request_id(request.headers.get("x-request-id"))
    token = logs.REQUEST_ID.set(request_id)  # asyncio.to_thread carries it to the thread's log lines
    try:
        status, payload, headers = await _answer(request)
    finally:
        logs.REQUEST_ID.reset(token)
    response = Response(status_code=204) if status == 204 else JSONResponse(payload, status)
    response.headers.update({"X-Request-ID": request_id, **headers})
    origin = request.headers.get("origin")
    if origin and status != 403:
        response.headers.update(cors_headers(origin))
    metrics.HTTP_LATENCY.labels(PATH, request.method, str(status)).observe(metrics.since(started))
    if status >= 500:
        metrics.ERRORS.labels("http", str(status)).inc()
    return response
