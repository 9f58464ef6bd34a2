"""Issue 7, CSRF: every state-changing route of the console and admin, called by a logged-in admin's browser
without a CSRF token, with a wrong one or with another session's, as a plain form and as htmx would post it,
is refused (400/403) and changes nothing in PostgreSQL.

The routes come from the Flask app's url_map, so a new route is covered the day it is added. Routes exempt from
the CSRF check by design are listed in EXEMPT with the reason; a route exempt without being listed fails a test.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from honcho.environ import parse_procfile

from desk.settings import ROOT
from tests.admin.conftest import Person, app_for_reading, logged_in
from tests.clients import start_conversation
from tests.conftest import Stack
from tests.factories import new_people

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")

# Exempt from flask-wtf's check, and why. Blueprints by name, views by "module.function" (flask-wtf's own keys).
EXEMPT_BLUEPRINTS = {
    # Visitors carry a signed token in the body, never a cookie: a forged cross-site request has no ambient
    # authority to borrow. Browsers are judged by Origin against the site's allowed origins instead.
    "widget_api": "the widget's token-authenticated JSON API (no cookie)",
    # Server-to-server, HMAC-signed with the tenant's API key per request (issue 7, "Server-to-server API").
    "api": "the signed server-to-server API under /api/ (no cookie)",
}
EXEMPT_VIEWS = {
    # Exempt from the global check only so that the upload's body limit is raised before the form is read; the
    # view calls csrf.protect() itself, and test_no_state_changing_route_accepts_a_forged_request proves it.
    "web.agent.attachments.upload_attachment": "checks the token itself, after raising the body limit",
}
# Of the exempt ones, those whose own check the forged-request test below exercises like any other route.
SELF_CHECKED = {"agent.upload_attachment"}

# A form body that would change something on most routes, were the token not checked.
HOSTILE_FORM = {
    "name": "csrf-was-here",
    "body": "csrf-was-here",
    "shortcut": "csrfwashere",
    "email": "csrf@attacker.test",
    "role": "owner",
    "presence": "away",
    "seq": "999",
    "color": "#ff0000",
    "allowed_origins": "https://attacker.test",
    "password": "Attacker-password-123",
    "new_password": "Attacker-password-123",
    "confirm": "Attacker-password-123",
    "labels": "csrf",
    "label": "csrf",
    "assignee_id": "",
    "until": "2030-01-01T00:00",
    "scope": "shared",
}


def forgeries(stranger_token: str) -> dict[str, dict[str, Any]]:
    """The ways a forged request can come: httpx keyword arguments for each."""
    htmx = {"HX-Request": "true", "HX-Current-URL": "https://attacker.test/"}
    return {
        "form without a token": {"data": HOSTILE_FORM},
        "form with a wrong token": {"data": {**HOSTILE_FORM, "csrf_token": "wrong"}},
        "form with another session's token": {"data": {**HOSTILE_FORM, "csrf_token": stranger_token}},
        "htmx without a token": {"data": HOSTILE_FORM, "headers": htmx},
        "htmx with a wrong header": {"data": HOSTILE_FORM, "headers": {**htmx, "X-CSRFToken": "wrong"}},
        "htmx with another session's header": {
            "data": HOSTILE_FORM,
            "headers": {**htmx, "X-CSRFToken": stranger_token},
        },
        "json without a token": {"json": HOSTILE_FORM, "headers": htmx},
    }


def exempt_blueprints(app: Flask) -> set[str]:
    """flask-wtf keeps the exempt Blueprint objects (older versions: their names)."""
    return {getattr(b, "name", b) for b in app.extensions["csrf"]._exempt_blueprints}


def exempt_endpoints(app: Flask) -> set[str]:
    """The endpoints flask-wtf does not check, read from its own registry (so nothing exempt goes unseen)."""
    csrf = app.extensions["csrf"]
    blueprints = exempt_blueprints(app)
    exempt = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint.split(".", 1)[0] in blueprints:
            exempt.add(rule.endpoint)
        elif f"{view.__module__}.{view.__name__}" in csrf._exempt_views:
            exempt.add(rule.endpoint)
    return exempt


def state_changing_rules(app: Flask) -> list[tuple[str, str, str]]:
    """(method, rule, endpoint) for every state-changing route of the app."""
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(set(rule.methods or ()) & set(STATE_CHANGING)):
            found.append((method, rule.rule, rule.endpoint))
    return sorted(found)


def snapshot(database_url: str) -> dict[str, str]:
    """Every table's rows, as a digest: any insert, update or delete shows."""
    digests = {}
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t ORDER BY 1').fetchall()
            digests[table] = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def app(stack: Stack) -> Flask:
    return app_for_reading()


@pytest.fixture(scope="module")
def scene(stack: Stack) -> Iterator[dict[str, Any]]:
    """An admin logged in, with one of each thing a route can act on, made with real requests (with the token)."""
    people = new_people()
    admin = logged_in(stack.base_url, people["owner"])
    conversation = start_conversation(stack.base_url, str(people["site_key"]), "Will you change my data?")
    made = [
        admin.post("/admin/labels", {"name": "vip", "color": "#00aa00"}),
        admin.post("/admin/teams", {"name": "Sales"}),
        admin.post("/admin/agents/invite", {"email": "new@example.test", "role": "agent"}),
        admin.post("/admin/api-keys", {"name": "shop"}),
    ]
    # The console's own forms take the token from the page's hx-headers, as console.js sends it.
    console_token = admin.csrf_of(admin.get("/console/canned").text)
    made.append(
        admin.client.post(
            "/console/canned",
            data={"shortcut": "hi", "body": "Hello!", "csrf_token": console_token},
        )
    )
    assert all(r.status_code < 400 for r in made), [(r.url, r.status_code) for r in made]

    ids: dict[str, str] = {
        "conversation_id": conversation,
        "user_id": str(people["agent"]["id"]),
        "tenant_id": str(people["tenant_id"]),
        "section": "routing",
    }
    tables = {"label_id": "labels", "team_id": "teams", "key_id": "api_keys", "invite_id": "invites",
              "canned_id": "canned_responses", "site_id": "sites"}  # fmt: skip
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        for param, table in tables.items():
            row = conn.execute(
                f"SELECT id FROM {table} WHERE tenant_id = %s LIMIT 1", (people["tenant_id"],)
            ).fetchone()
            ids[param] = str(row[0]) if row else str(uuid.uuid4())
    # A token that is genuine, but of someone else's session (an attacker's own visit to the login page).
    stranger_token = Person(stack.base_url).anonymous().token
    yield {"admin": admin, "ids": ids, "stranger_token": stranger_token, "people": people}


def url_for_rule(rule: str, ids: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        return ids.get(name, secrets.token_hex(4) if match.group(1) is None else str(uuid.uuid4()))

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", fill, rule)


def test_every_exempt_route_is_listed_with_its_reason(app: Flask) -> None:
    listed = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint.split(".", 1)[0] in EXEMPT_BLUEPRINTS or f"{view.__module__}.{view.__name__}" in EXEMPT_VIEWS:
            listed.add(rule.endpoint)
    unlisted = exempt_endpoints(app) - listed
    assert unlisted == set(), f"exempt from CSRF without a reason in EXEMPT_*: {sorted(unlisted)}"
    # ... and the console and admin are not exempt wholesale.
    assert not {"agent", "admin", "auth", "platform"} & exempt_blueprints(app)


def test_the_url_map_has_the_console_and_admin_routes_this_suite_expects(app: Flask) -> None:
    endpoints = {endpoint for _m, _r, endpoint in state_changing_rules(app)}
    # A handful that must be there; if the app stops exposing them, the enumeration below would silently shrink.
    for expected in ("agent.reply", "agent.resolve", "admin.labels", "admin.invite", "auth.logout", "auth.login"):
        assert expected in endpoints
    assert len(endpoints) >= 40


def forge_every_route(
    admin: Person, app: Flask, scene: dict[str, Any], exempt: set[str]
) -> tuple[list[str], int]:
    """Every forgery against every state-changing route that is not exempt: (what was accepted, how many tried)."""
    accepted = []
    tried = 0
    for method, rule, endpoint in state_changing_rules(app):
        if endpoint in exempt:
            continue
        url = url_for_rule(rule, scene["ids"])
        for how, kwargs in forgeries(scene["stranger_token"]).items():
            response = admin.client.request(method, url, **kwargs)
            tried += 1
            if response.status_code not in (400, 403):
                accepted.append(f"{method} {url} ({how}): {response.status_code} {response.text[:120]!r}")
            elif response.status_code == 400 and "csrf" not in response.text.lower() and endpoint not in SELF_CHECKED:
                accepted.append(f"{method} {url} ({how}): 400 without a CSRF message {response.text[:120]!r}")
    return accepted, tried


def test_no_state_changing_route_accepts_a_forged_request(stack: Stack, app: Flask, scene: dict[str, Any]) -> None:
    admin: Person = scene["admin"]
    exempt = exempt_endpoints(app) - SELF_CHECKED
    # The worker's sweeps (presence, routing's time limits, mail) write on their own: stopped meanwhile, so any
    # change between the two snapshots is a forged request's.
    stack.stop("worker")
    try:
        before = snapshot(stack.env["DATABASE_URL"])
        accepted, tried = forge_every_route(admin, app, scene, exempt)
        after = snapshot(stack.env["DATABASE_URL"])
    finally:
        stack.start("worker", parse_procfile((ROOT / "Procfile").read_text()).processes["worker"])
    assert accepted == [], "\n".join(accepted)
    assert tried >= 40 * len(forgeries(""))
    changed = sorted(t for t in before if before[t] != after.get(t))
    assert changed == [], f"a refused request changed these tables: {changed}"

    # The admin is still logged in (the forged logout did nothing) and the real token still works.
    assert admin.get("/admin/labels").status_code == 200
    renamed = admin.post(f"/admin/labels/{scene['ids']['label_id']}", {"name": "gold", "color": "#00aa00"})
    assert renamed.status_code < 400
    assert "gold" in admin.get("/admin/labels").text
    # ... and the snapshot would have seen a change (so "changed nothing" above is not vacuous).
    assert snapshot(stack.env["DATABASE_URL"])["labels"] != after["labels"]
