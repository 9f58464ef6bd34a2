"""The role suite: every admin and platform route (from the app's own url_map), with each role. Only the allowed
roles succeed (200 or 303); other users get 403, nobody logged in gets the login page, and a refused POST changes
nothing. Run against a web process in SaaS mode, where every route exists; self-hosted hides /platform."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from sqlalchemy import text

from desk import widget_settings
from desk.actions import agents as agent_actions
from desk.actions import api_keys, labels, teams
from desk.actions import rules as routing_rules
from desk.audit import Client
from desk.db import system_session, tenant_session
from desk.models import Site, User
from tests.admin.conftest import Person, app_for_reading, logged_in
from tests.conftest import Stack
from tests.factories import new_people, platform_operator

ROLES = ("agent", "admin", "owner", "operator", None)  # None: logged out
# Who may use a route; every other /admin route is for admins and owners.
OWNER_ONLY = {"admin.transfer_ownership", "admin.tenant"}
OPERATOR_ONLY_PREFIX = "platform."
# Routes after which the world is no longer the same (the actor lost the ownership, the tenant is gone): each is
# tried in a world of its own.
TERMINAL = {("admin.transfer_ownership", "POST"), ("admin.tenant", "POST")}


@dataclass
class World:
    """One tenant with its people and one of everything the routes change, and another tenant for the operator."""

    people: dict[str, Any]
    operator: dict[str, Any]
    victim: dict[str, Any]
    site_id: uuid.UUID
    target_id: uuid.UUID
    team_id: uuid.UUID
    label_id: uuid.UUID
    key_id: uuid.UUID
    invite_id: uuid.UUID
    rule_id: str

    def login(self, role: str) -> dict[str, Any]:
        return self.operator if role == "operator" else self.people[role]


def new_world() -> World:
    people = new_people()
    tenant_id = people["tenant_id"]
    with tenant_session(tenant_id) as session:
        owner = session.get(User, people["owner"]["id"])
        client = Client("127.0.0.1", "setup")
        target = agent_actions.do_accept_invite(
            session,
            agent_actions.do_create_invite(
                session, owner, client, f"t-{secrets.token_hex(3)}@x.test", "agent", ("agent",)
            )[0].id,
            client,
            "Target",
            secrets.token_urlsafe(12),
        )
        owner = session.get(User, people["owner"]["id"])
        invite, _ = agent_actions.do_create_invite(
            session, owner, client, f"i-{secrets.token_hex(3)}@x.test", "agent", ("agent",)
        )
        team = teams.do_create_team(session, owner, client, "Support")
        label = labels.do_create_label(session, owner, client, {"name": "billing", "color": "#ff0000"})
        key, _ = api_keys.do_create_api_key(session, owner, client, "CRM", "not-the-app-key")
        rule = routing_rules.do_add_rule(
            session, owner, client, {"when": "page_contains", "value": "/pricing", "team_id": str(team.id)}
        )
        site_id = session.execute(text("SELECT id FROM sites WHERE tenant_id = :t"), {"t": tenant_id}).scalar_one()
    operator, victim = platform_operator(), new_people()
    return World(
        people, operator, victim, site_id, target.id, team.id, label.id, key.id, invite.id, rule["id"]
    )


def schedule(**extra: str) -> dict[str, str]:
    return {"timezone": "Europe/Paris", "hours_mon": "09:00-12:00, 13:00-17:00", "holidays": "2026-12-25", **extra}


# (endpoint, method) → the path and form an allowed user sends; in the order they are tried.
Sample = Callable[[World], tuple[str, dict[str, Any]]]
SAMPLES: dict[tuple[str, str], Sample] = {
    ("admin.index", "GET"): lambda w: ("/admin", {}),
    ("admin.sites", "GET"): lambda w: ("/admin/sites", {}),
    ("admin.sites", "POST"): lambda w: ("/admin/sites", {"name": "Shop", "allowed_origins": "https://shop.test"}),
    ("admin.site", "GET"): lambda w: (f"/admin/sites/{w.site_id}", {}),
    ("admin.site", "POST"): lambda w: (
        f"/admin/sites/{w.site_id}",
        {"name": "Renamed", "allowed_origins": "", "color": "#112233", "position": "left"},
    ),
    ("admin.rotate_secret", "POST"): lambda w: (f"/admin/sites/{w.site_id}/rotate", {}),
    ("admin.site_prechat", "POST"): lambda w: (
        f"/admin/sites/{w.site_id}/prechat",
        {"prechat_enabled": "on", "prechat_email": "required", "prechat_options": "Sales\nSupport"},
    ),
    ("admin.add_invitation", "POST"): lambda w: (
        f"/admin/sites/{w.site_id}/invitations",
        {"match": "starts", "path": "/pricing", "seconds": "30", "text_en": "Need help?", "on": "on"},
    ),
    ("admin.switch_invitation", "POST"): lambda w: (
        f"/admin/sites/{w.site_id}/invitations/{first_invitation(w)}/switch",
        {"on": ""},
    ),
    ("admin.invitation_caps", "POST"): lambda w: (
        f"/admin/sites/{w.site_id}/invitation-caps",
        {"hours": "12", "per_session": "2"},
    ),
    ("admin.delete_invitation", "POST"): lambda w: (
        f"/admin/sites/{w.site_id}/invitations/{first_invitation(w)}/delete",
        {},
    ),
    ("admin.agents", "GET"): lambda w: ("/admin/agents", {}),
    ("admin.invite", "POST"): lambda w: (
        "/admin/agents/invite",
        {"email": f"new-{secrets.token_hex(3)}@x.test", "role": "agent"},
    ),
    ("admin.revoke_invite", "POST"): lambda w: (f"/admin/invites/{w.invite_id}/revoke", {}),
    ("admin.update_agent", "POST"): lambda w: (
        f"/admin/agents/{w.target_id}",
        {"max_chats": "3", "team_ids": [str(w.team_id)]},
    ),
    ("admin.set_role", "POST"): lambda w: (f"/admin/agents/{w.target_id}/role", {"role": "admin"}),
    ("admin.deactivate", "POST"): lambda w: (f"/admin/agents/{w.target_id}/deactivate", {}),
    ("admin.reactivate", "POST"): lambda w: (f"/admin/agents/{w.target_id}/reactivate", {}),
    ("admin.sign_out_everywhere", "POST"): lambda w: (f"/admin/agents/{w.target_id}/sign-out", {}),
    ("admin.reset_two_factor", "POST"): lambda w: (f"/admin/agents/{w.target_id}/two-factor/reset", {}),
    ("admin.save_two_factor", "POST"): lambda w: ("/admin/settings/two-factor", {}),
    ("admin.teams", "GET"): lambda w: ("/admin/teams", {}),
    ("admin.teams", "POST"): lambda w: ("/admin/teams", {"name": "Sales"}),
    ("admin.update_team", "POST"): lambda w: (
        f"/admin/teams/{w.team_id}",
        {"name": "Support 2", "member_ids": [str(w.target_id)]},
    ),
    ("admin.hours_page", "GET"): lambda w: ("/admin/hours", {}),
    ("admin.hours_page", "POST"): lambda w: ("/admin/hours", schedule()),
    ("admin.team_hours", "GET"): lambda w: (f"/admin/hours/{w.team_id}", {}),
    ("admin.team_hours", "POST"): lambda w: (f"/admin/hours/{w.team_id}", schedule(timezone="Asia/Tokyo")),
    ("admin.routing_rules", "GET"): lambda w: ("/admin/routing-rules", {}),
    ("admin.routing_rules", "POST"): lambda w: (
        "/admin/routing-rules",
        {"when": "language", "value": "zh", "team_id": str(w.team_id)},
    ),
    ("admin.move_routing_rule", "POST"): lambda w: (f"/admin/routing-rules/{w.rule_id}/move", {"direction": "down"}),
    ("admin.delete_routing_rule", "POST"): lambda w: (f"/admin/routing-rules/{w.rule_id}/delete", {}),
    ("admin.delete_team", "POST"): lambda w: (f"/admin/teams/{w.team_id}/delete", {}),
    ("admin.labels", "GET"): lambda w: ("/admin/labels", {}),
    ("admin.labels", "POST"): lambda w: ("/admin/labels", {"name": "vip", "color": "#00ff00"}),
    ("admin.update_label", "POST"): lambda w: (f"/admin/labels/{w.label_id}", {"name": "invoices", "color": "#0000ff"}),
    ("admin.delete_label", "POST"): lambda w: (f"/admin/labels/{w.label_id}/delete", {}),
    ("admin.settings", "GET"): lambda w: ("/admin/settings", {}),
    ("admin.save_settings", "POST"): lambda w: ("/admin/settings/routing", {"strategy": "least_busy"}),
    ("admin_mail.save", "POST"): lambda w: (
        "/admin/mail",
        {"host": "127.0.0.1", "port": "2525", "security": "none", "from_address": "help@shop.test"},
    ),
    ("admin_mail.test", "POST"): lambda w: ("/admin/mail/test", {}),
    ("admin.api_keys", "GET"): lambda w: ("/admin/api-keys", {}),
    ("admin.api_keys", "POST"): lambda w: ("/admin/api-keys", {"name": "Billing sync"}),
    ("admin.revoke_api_key", "POST"): lambda w: (f"/admin/api-keys/{w.key_id}/revoke", {}),
    ("admin.audit_log", "GET"): lambda w: ("/admin/audit?action=login", {}),
    ("admin.audit_csv", "GET"): lambda w: ("/admin/audit.csv", {}),
    ("admin.tenant", "GET"): lambda w: ("/admin/tenant", {}),
    ("admin_export.people_or_settings", "GET"): lambda w: ("/admin/export/agents.json", {}),
    ("admin_export.conversations", "GET"): lambda w: (
        "/admin/export/conversations.csv?from=2026-01-01&to=2026-01-31",
        {},
    ),
    ("platform.tenants", "GET"): lambda w: ("/platform", {}),
    ("platform.tenants", "POST"): lambda w: (
        "/platform",
        {"slug": f"p-{secrets.token_hex(3)}", "name": "New Co", "owner_email": f"o-{secrets.token_hex(3)}@x.test"},
    ),
    ("platform.suspend", "POST"): lambda w: (f"/platform/tenants/{w.victim['tenant_id']}/suspend", {}),
    ("platform.resume", "POST"): lambda w: (f"/platform/tenants/{w.victim['tenant_id']}/resume", {}),
    ("platform.delete", "POST"): lambda w: (
        f"/platform/tenants/{w.victim['tenant_id']}/delete",
        {"confirm": w.victim["slug"]},
    ),
    ("admin.transfer_ownership", "POST"): lambda w: (f"/admin/agents/{w.target_id}/transfer-ownership", {}),
    ("admin.tenant", "POST"): lambda w: ("/admin/tenant", {"confirm": w.people["slug"]}),
}


@cache
def admin_routes() -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every route under /admin or /platform, as the app declares them."""
    app = app_for_reading()
    return sorted(
        (rule.endpoint, method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/admin", "/platform"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


def allowed(endpoint: str) -> set[str]:
    if endpoint.startswith(OPERATOR_ONLY_PREFIX):
        return {"operator"}
    if endpoint in OWNER_ONLY:
        return {"owner"}
    return {"admin", "owner"}


def first_invitation(world: World) -> str:
    """The site's first invitation (the add sample made it), or "none" for a role that could not add one."""
    with tenant_session(world.people["tenant_id"]) as session:
        rules = widget_settings.invitations_of(session.get(Site, world.site_id).widget)["rules"]
    return rules[0]["id"] if rules else "none"


def sample(world: World, endpoint: str, method: str, rule: str) -> tuple[str, dict[str, Any]]:
    """The request to make; a route added without a sample is tried as a plain GET when it takes no argument."""
    if (endpoint, method) in SAMPLES:
        return SAMPLES[(endpoint, method)](world)
    assert method == "GET" and "<" not in rule, f"add a sample for {method} {rule} ({endpoint}) to SAMPLES"
    return rule, {}


def ordered(routes: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    order = list(SAMPLES)
    return sorted(routes, key=lambda r: order.index(r[:2]) if r[:2] in order else -1)


STATE_TABLES = (
    "tenants",
    "sites",
    "users",
    "teams",
    "team_members",
    "invites",
    "api_keys",
    "labels",
    "schedules",
    "mail_settings",
)


def state(world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the admin routes can change, of both tenants, and the number of audit entries."""
    tenants = {"a": world.people["tenant_id"], "b": world.victim["tenant_id"]}
    found: dict[str, list[tuple[Any, ...]]] = {}
    with system_session() as session:
        for table in STATE_TABLES:
            column = "id" if table == "tenants" else "tenant_id"
            rows = session.execute(
                text(f"SELECT * FROM {table} WHERE {column} IN (:a, :b) ORDER BY 1, 2"), tenants
            ).all()
            found[table] = sorted(tuple(map(str, row)) for row in rows)
        found["audit"] = [
            session.execute(text("SELECT count(*) FROM audit_log WHERE action NOT LIKE 'login.%'")).scalar_one()
        ]
    return found


def test_every_admin_route_is_in_the_suite() -> None:
    routes = admin_routes()
    assert len(routes) >= 35
    for endpoint, method, rule in routes:
        if "<" in rule or method != "GET":
            assert (endpoint, method) in SAMPLES, f"add a sample for {method} {rule} ({endpoint}) to SAMPLES"


@pytest.mark.parametrize("role", ROLES, ids=[r or "logged-out" for r in ROLES])
def test_each_role_gets_only_its_own_admin_routes(stack: Stack, saas_url: str, role: str | None) -> None:
    world = new_world()
    person = logged_in(saas_url, world.login(role)) if role else Person(saas_url).anonymous()
    outcomes = []
    for endpoint, method, rule in ordered(admin_routes()):
        if (endpoint, method) in TERMINAL:
            continue
        outcomes.append(try_route(world, person, role, endpoint, method, rule))
    assert [o for o in outcomes if o] == []


@pytest.mark.parametrize("route", sorted(TERMINAL))
@pytest.mark.parametrize("role", ROLES, ids=[r or "logged-out" for r in ROLES])
def test_routes_that_change_the_ownership_or_end_the_tenant(
    stack: Stack, saas_url: str, role: str | None, route: tuple[str, str]
) -> None:
    world = new_world()
    person = logged_in(saas_url, world.login(role)) if role else Person(saas_url).anonymous()
    [rule] = [r for e, m, r in admin_routes() if (e, m) == route]
    assert try_route(world, person, role, *route, rule) == ""


def try_route(world: World, person: Person, role: str | None, endpoint: str, method: str, rule: str) -> str:
    """What went wrong with this request, or ""."""
    path, form = sample(world, endpoint, method, rule)
    may = role in allowed(endpoint)
    before = state(world) if method == "POST" and not may else None
    response = person.get(path) if method == "GET" else person.post(path, form)
    where = f"{role or 'logged out'} {method} {path}: {response.status_code}"
    if may:
        return "" if response.status_code in (200, 303) else f"{where}, expected 200 or 303\n{response.text[:300]}"
    if role is None:
        if response.status_code != 302 or "/login" not in response.headers.get("location", ""):
            return f"{where}, expected a redirect to the login page"
    elif response.status_code != 403:
        return f"{where}, expected 403"
    if before is not None and state(world) != before:
        return f"{where}, and it changed something"
    return ""


def test_self_hosted_hides_the_platform_pages_and_keeps_its_tenant(stack: Stack) -> None:
    people = new_people()
    operator = platform_operator()
    owner = logged_in(stack.base_url, people["owner"])
    assert owner.get("/platform").status_code == 404
    refused = owner.post("/admin/tenant", {"confirm": people["slug"]})
    assert refused.status_code == 409
    assert "self-hosted" in refused.text
    assert owner.get("/admin/sites").status_code == 200  # still there
    # An operator's role means nothing without SaaS mode: no platform, no admin pages.
    someone = logged_in(stack.base_url, operator)
    assert someone.get("/platform").status_code == 404
    assert someone.get("/admin/sites").status_code == 403
