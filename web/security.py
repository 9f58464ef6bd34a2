"""Transport and headers (docs/operations.md, "TLS and proxies"): who may speak plain HTTP, which proxies are
believed, and the security headers of every response.

`install(app)` puts the rules on the Flask app; `Transport` puts the same rules in front of the whole ASGI
application (web/asgi.py), so the socket edge's routes, which never reach Flask, obey them too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, jsonify, redirect, request
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from desk.settings import Network, Settings

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Paths a program calls rather than a person visits: refused, never redirected, when they arrive in plain HTTP.
API_PREFIXES = ("/api/", "/lp/", "/live/", "/ws/")
FORWARDED = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"
# The page embedding the widget is the customer's, and /demo stands in for it (development only): no CSP of ours.
NO_CSP_PATHS = ("/demo",)
# Browsers keep widget.js an hour, then serve the cached copy at once while they revalidate it (ETag).
WIDGET_JS_CACHE = "public, max-age=3600, stale-while-revalidate=604800"


def within(address: str | None, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _last(value: str | None) -> str | None:
    """The entry the nearest proxy added: we trust that proxy, not what its clients claimed before it."""
    last = (value or "").rsplit(",", 1)[-1].strip()
    return last or None


@dataclass(frozen=True)
class Origin:
    """Where a request really comes from and how it arrived, after believing (or not) the proxy in front."""

    client: str | None
    scheme: str
    host: str

    @classmethod
    def resolve(cls, config: Settings, peer: str | None, scheme: str, host: str, forwarded: dict[str, str]) -> Origin:
        if not within(peer, config.trusted_proxies):
            return cls(peer, scheme, host)
        proto = (_last(forwarded.get("x-forwarded-proto")) or "").lower()
        if proto in ("http", "https"):
            scheme = proto if scheme in ("http", "https") else proto.replace("http", "ws")
        return cls(
            _last(forwarded.get("x-forwarded-for")) or peer, scheme, _last(forwarded.get("x-forwarded-host")) or host
        )

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "wss")


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str = ""
    message: str = ""
    location: str = ""


# Served over plain HTTP to loopback in production too: what a local probe or scraper asks for.
LOCAL_CHECKS = ("/healthz", "/readyz", "/metrics")


def refusal(config: Settings, origin: Origin, method: str, path: str, query: str, websocket: bool) -> Refusal | None:
    """None when this request may be served; otherwise the redirect (pages) or refusal (APIs, sockets) it gets."""
    if origin.secure:
        return None
    loopback = within(origin.client, LOOPBACK)
    if config.development:
        if loopback:
            return None
        return Refusal(403, "loopback_only", "development mode serves plain HTTP to this machine (loopback) only")
    if loopback and path in LOCAL_CHECKS:
        return None  # health checks and the metrics scrape from this machine, without TLS
    if websocket or method not in ("GET", "HEAD") or path.startswith(API_PREFIXES):
        return Refusal(403, "tls_required", "this server accepts HTTPS (and WSS) only")
    base = config.public_url if (config.public_url or "").startswith("https://") else f"https://{origin.host}"
    return Refusal(301, location=f"{base}{path}{'?' + query if query else ''}")


# -- Flask -------------------------------------------------------------------------------------------------------


class _TrustedProxyFix:
    """WSGI: X-Forwarded-* applied when the direct peer is a trusted proxy, and removed in every case."""

    def __init__(self, app: Any, config: Settings) -> None:
        self.app, self.config = app, config

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        keys = {name: "HTTP_" + name.upper().replace("-", "_") for name in FORWARDED}
        forwarded = {name: environ.pop(key) for name, key in keys.items() if key in environ}
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        origin = Origin.resolve(self.config, environ.get("REMOTE_ADDR"), environ["wsgi.url_scheme"], host, forwarded)
        environ.update({"REMOTE_ADDR": origin.client or "", "HTTP_HOST": origin.host, "wsgi.url_scheme": origin.scheme})
        return self.app(environ, start_response)


def _check_transport() -> Response | None:
    config: Settings = current_app.config["DESKBELL"]
    origin = Origin(request.remote_addr, request.scheme, request.host)
    query = request.query_string.decode("latin-1")
    found = refusal(config, origin, request.method, request.path, query, websocket=False)
    if found is None:
        return None
    if found.location:
        return redirect(found.location, 301)
    response = jsonify(error=found.error, message=found.message)
    response.status_code = found.status
    return response


def _add_headers(response: Response) -> Response:
    config: Settings = current_app.config["DESKBELL"]
    response.headers["X-Content-Type-Options"] = "nosniff"
    if not config.development and request.is_secure:
        response.headers["Strict-Transport-Security"] = HSTS
    if request.path == "/widget.js":
        response.headers["Cache-Control"] = WIDGET_JS_CACHE
    if response.mimetype == "text/html":
        if request.path not in NO_CSP_PATHS:
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def install(app: Flask) -> None:
    """The transport rules and the headers, on every request of this app."""
    app.wsgi_app = _TrustedProxyFix(app.wsgi_app, app.config["DESKBELL"])  # type: ignore[method-assign]
    app.before_request(_check_transport)
    app.after_request(_add_headers)


# -- ASGI --------------------------------------------------------------------------------------------------------


class Transport:
    """ASGI: the same rules for everything Hypercorn serves. It rewrites the scope's client, scheme and Host for a
    trusted proxy, drops X-Forwarded-* for everyone else, and refuses before the route runs."""

    def __init__(self, app: ASGIApp, config: Settings) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        names = [(k.decode("latin-1"), v) for k, v in scope["headers"]]
        forwarded = {k: v.decode("latin-1") for k, v in names if k in FORWARDED}
        host = next((v.decode("latin-1") for k, v in names if k == "host"), "")
        peer = scope["client"][0] if scope.get("client") else None
        origin = Origin.resolve(self.config, peer, scope["scheme"], host, forwarded)
        headers = [(k, v) for k, v in scope["headers"] if k.decode("latin-1") not in (*FORWARDED, "host")]
        if origin.host:
            headers.append((b"host", origin.host.encode("latin-1")))
        client = (origin.client, 0) if origin.client != peer else scope.get("client")
        scope = {**scope, "headers": headers, "client": client, "scheme": origin.scheme}

        websocket = scope["type"] == "websocket"
        query = scope.get("query_string", b"").decode("latin-1")
        found = refusal(self.config, origin, scope.get("method", "GET"), scope["path"], query, websocket)
        if found is not None:
            await self._refuse(found, scope, receive, send)
            return
        if websocket:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                extra = MutableHeaders(scope=message)
                extra.setdefault("X-Content-Type-Options", "nosniff")
                if not self.config.development and origin.secure:
                    extra.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, found: Refusal, scope: Scope, receive: Receive, send: Send) -> None:
        if found.location:
            response: JSONResponse | RedirectResponse = RedirectResponse(found.location, 301)
        else:
            response = JSONResponse({"error": found.error, "message": found.message}, found.status)
        if scope["type"] == "http":
            await response(scope, receive, send)
        elif "websocket.http.response" in scope.get("extensions", {}):
            await WebSocket(scope, receive, send).send_denial_response(response)
        else:  # a server without denial responses answers a close before accept with a bare 403
            await send({"type": "websocket.close", "code": 4426})
