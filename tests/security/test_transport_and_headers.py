"""Issue 7, transport and headers: TLS in production (directly or through a trusted proxy), plain HTTP on loopback
only in development, X-Forwarded-* believed from trusted proxies only, and the security headers of each response.

Header rules are checked on the application in-process (Flask's test client; httpx's ASGI transport for the widget's
session request, which the edge serves); the transport rules on a real `web` process from the Procfile too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from desk.db import system_session, tenant_session
from desk.models import Site
from desk.models import Visitor as VisitorRow
from tests.clients import asgi_post, in_process
from tests.conftest import Stack
from web import create_app

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


def app_with(monkeypatch: pytest.MonkeyPatch, env: str = "development", trusted_proxies: str = "") -> Flask:
    monkeypatch.setenv("DESKBELL_ENV", env)
    monkeypatch.setenv("TRUSTED_PROXIES", trusted_proxies)
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.delenv("NATS_URL", raising=False)  # no NATS connection to outlive the suite's nats-server
    return create_app()


def post_session(
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
    env: str = "development",
    trusted_proxies: str = "",
    peer: str = "127.0.0.1",
    base_url: str = "http://localhost",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """`POST /api/v1/widget/session` to the whole ASGI application, served in-process, from `peer`."""
    app = in_process(app_with(monkeypatch, env, trusted_proxies))
    return asgi_post(app, "/api/v1/widget/session", peer, base_url, json=body, headers=headers)


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    return app_with(monkeypatch).test_client()


def site_key(tenant_id: Any) -> str:
    with system_session() as session:
        return session.scalars(select(Site.site_key).where(Site.tenant_id == tenant_id)).one()


def visitor_country(tenant_id: Any, visitor_id: str) -> str | None:
    with tenant_session(tenant_id) as session:
        visitor = session.get(VisitorRow, visitor_id)
        assert visitor is not None
        return visitor.context.get("country")


# -- headers -----------------------------------------------------------------------------------------------------


def test_console_pages_get_a_strict_csp_frame_protection_nosniff_and_a_referrer_policy(client: FlaskClient) -> None:
    for path in ("/login", "/console"):
        response = client.get(path, follow_redirects=True)
        assert response.mimetype == "text/html"
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_console_pages_load_only_their_own_files(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert "<script>" not in page and "<style" not in page and "style=" not in page
    assert '"includeIndicatorStyles":false' in page  # else htmx injects a <style> the CSP blocks
    for asset in ("/vendor/htmx.min.js", "/vendor/sse.js", "/static/console.js", "/static/console.css"):
        assert asset in page
        assert client.get(asset).status_code == 200


def test_widget_js_is_nosniff_and_cached_long_but_revalidated(client: FlaskClient) -> None:
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "public, max-age=3600, stale-while-revalidate=604800"
    assert client.get("/widget.js", headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
    assert "Content-Security-Policy" not in response.headers  # embedded in the customer's page, under its CSP


def test_widget_api_responses_are_nosniff(database_url: str, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for body, status in (({"site_key": site_key(tenant)}, 200), ({"nonsense": True}, 400)):
        response = post_session(monkeypatch, body)
        assert response.status_code == status
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_production_cookies_are_secure_httponly_lax_and_https_answers_carry_hsts(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app_with(monkeypatch, "production").test_client()
    response = client.get("/login", base_url="https://chat.example.com")
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert response.headers["Strict-Transport-Security"] == HSTS


def test_development_answers_have_no_hsts(client: FlaskClient) -> None:
    assert "Strict-Transport-Security" not in client.get("/login", base_url="https://localhost").headers


# -- who may speak plain HTTP, and whose X-Forwarded-* counts ------------------------------------------------------


def test_development_serves_plain_http_to_loopback_only(client: FlaskClient) -> None:
    assert client.get("/login").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/login", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/login", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["error"] == "loopback_only"
    assert "loopback" in refused.json["message"]


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    database_url: str, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app_with(monkeypatch, "production", trusted_proxies="10.0.0.0/8").test_client()
    peer = {"REMOTE_ADDR": "8.8.8.8"}
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "81.2.69.160", "X-Forwarded-Host": "evil.test"}
    response = client.get("/login?next=%2Fconsole", environ_base=peer, headers=forged)
    assert response.status_code == 301
    assert response.headers["Location"] == "https://localhost/login?next=%2Fconsole"

    # Over TLS it is served, and the visitor is where it connects from (US), not where it claims to be (GB).
    session = post_session(
        monkeypatch,
        {"site_key": site_key(tenant)},
        "production",
        "10.0.0.0/8",
        peer="8.8.8.8",
        base_url="https://chat.example.com",
        headers=forged,
    )
    assert session.status_code == 200
    assert session.json()["ws_url"] == "wss://chat.example.com/ws/visitor"
    assert visitor_country(tenant, session.json()["visitor_id"]) == "US"


def test_a_trusted_proxy_gives_the_real_visitor_address_and_scheme(
    database_url: str, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = post_session(
        monkeypatch,
        {"site_key": site_key(tenant)},
        "production",
        "10.0.0.0/8, 2001:db8::1",
        peer="10.1.2.3",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "8.8.8.8, 81.2.69.160", "X-Forwarded-Host": "c.test"},
    )
    assert session.status_code == 200
    assert session.json()["ws_url"] == "wss://c.test/ws/visitor"
    assert session.headers["Strict-Transport-Security"] == HSTS
    # The address the proxy saw (the last one), not what the client wrote before it.
    assert visitor_country(tenant, session.json()["visitor_id"]) == "GB"


def test_trusted_proxies_must_be_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    from desk import settings

    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1, proxy.example.com")
    with pytest.raises(RuntimeError, match="TRUSTED_PROXIES"):
        settings.load()


# -- the real process, in production behind a proxy on 127.0.0.1 ---------------------------------------------------


@pytest.fixture(scope="module")
def production(stack: Stack) -> Iterator[str]:
    with stack.another_web(DESKBELL_ENV="production", TRUSTED_PROXIES="127.0.0.1") as url:
        yield url


VIA_TLS_PROXY = {"X-Forwarded-Proto": "https"}


def test_production_redirects_plain_pages_to_https(production: str) -> None:
    response = httpx.get(f"{production}/console?x=1", timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{production.removeprefix('http://')}/console?x=1"
    assert "Strict-Transport-Security" not in response.headers


def test_production_refuses_plain_api_requests(production: str, stack: Stack) -> None:
    key = stack.bootstrap()["site_key"]
    for method, path in [("POST", "/api/v1/widget/session"), ("GET", "/lp/visitor"), ("GET", "/live/console")]:
        response = httpx.request(method, production + path, json={"site_key": key}, timeout=10)
        assert response.status_code == 403, path
        assert response.json()["error"] == "tls_required"
        assert response.json()["message"]


def test_production_serves_what_a_trusted_proxy_received_over_tls(production: str, stack: Stack) -> None:
    key = stack.bootstrap()["site_key"]
    session = httpx.post(f"{production}/api/v1/widget/session", json={"site_key": key}, headers=VIA_TLS_PROXY)
    assert session.status_code == 200
    assert session.headers["Strict-Transport-Security"] == HSTS
    assert session.headers["X-Content-Type-Options"] == "nosniff"
    page = httpx.get(f"{production}/login", headers=VIA_TLS_PROXY, timeout=10)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == HSTS
    assert page.headers["Content-Security-Policy"] == CSP
    assert "Secure" in page.headers["Set-Cookie"]
    # The edge's own routes too: past the transport rule, to the route's own answer.
    assert httpx.get(f"{production}/live/console", headers=VIA_TLS_PROXY, timeout=10).status_code == 401


def test_production_refuses_plain_websockets(production: str) -> None:
    async def handshake(headers: dict[str, str]) -> int | None:
        """The HTTP status of a refused handshake, or None when the socket was opened."""
        url = production.replace("http://", "ws://") + "/ws/visitor?token=x"
        try:
            async with websockets.connect(url, additional_headers=headers):
                return None
        except websockets.InvalidStatus as exc:
            assert exc.response.status_code != 403 or b"tls_required" in exc.response.body
            return exc.response.status_code

    assert asyncio.run(handshake({})) == 403
    assert asyncio.run(handshake(VIA_TLS_PROXY)) is None  # opened (then closed for the bad token)


def test_production_health_answers_plain_http_on_loopback(production: str) -> None:
    assert httpx.get(f"{production}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{production}/readyz", timeout=10).status_code == 200
