"""What an admin does in the panel and what everyone then sees: sites and their snippet, invitations, deactivation,
roles, teams, business hours, labels, settings and their enforcement, API keys, the audit log, and (SaaS) what
suspending or deleting a tenant does. Rules are checked on the actions; what people see, over HTTP."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select, update

from desk import tenant_settings
from desk.actions import agents, api_keys, hours, labels, rules, teams
from desk.actions.admin import Conflict, Forbidden, Invalid, do_update_settings
from desk.audit import Client
from desk.db import system_session, tenant_session
from desk.models import ApiKey, AuditLog, Conversation, Invite, Site, Team, Tenant, User
from tests.admin.conftest import USER_AGENT, Person, app_for_reading, logged_in
from tests.clients import session as widget_session
from tests.conftest import Stack
from tests.factories import new_conversation, new_people, platform_operator

HERE = Client("127.0.0.1", "pytest")


def acting(tenant_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    """A tenant session and the acting user's row, as the admin views open them."""

    class Acting:
        def __enter__(self) -> tuple[Any, User]:
            self.cm = tenant_session(tenant_id)
            session = self.cm.__enter__()
            return session, session.get(User, user_id)

        def __exit__(self, *exc: object) -> None:
            self.cm.__exit__(*exc)

    return Acting()


def audit_entries(tenant_id: uuid.UUID, action: str) -> list[AuditLog]:
    with system_session() as session:
        query = select(AuditLog).where(AuditLog.tenant_id == tenant_id, AuditLog.action == action)
        return list(session.scalars(query.order_by(AuditLog.id)))


def link_in(page: str, prefix: str) -> str:
    match = re.search(re.escape(prefix) + r"[^<\s\"]+", html.unescape(page))
    assert match, f"no {prefix} on the page"
    return match.group(0)


# -- sites ----------------------------------------------------------------------------------------------------------


def test_a_new_site_shows_the_snippet_to_paste_with_this_hosts_widget_js(stack: Stack) -> None:
    people = new_people()
    owner = logged_in(stack.base_url, people["owner"])
    created = owner.post("/admin/sites", {"name": "Shop", "allowed_origins": "https://shop.test/\nhttps://b.test"})
    assert created.status_code == 303
    page = owner.get(created.headers["location"])
    with tenant_session(people["tenant_id"]) as session:
        site = session.scalar(select(Site).where(Site.name == "Shop"))
    assert site.allowed_origins == ["https://shop.test", "https://b.test"]
    snippet = f'<script src="{stack.base_url}/widget.js" data-site="{site.site_key}" async></script>'
    assert snippet in html.unescape(page.text)
    assert "Put its snippet on your pages." in page.text
    assert 'data-copy="#snippet"' in page.text


def test_a_site_with_a_bad_origin_or_colour_is_refused_with_a_message(stack: Stack) -> None:
    people = new_people()
    owner = logged_in(stack.base_url, people["owner"])
    bad = owner.post("/admin/sites", {"name": "Shop", "allowed_origins": "shop.test/path"})
    assert bad.status_code == 400
    assert "Not an origin" in html.unescape(bad.text)
    site_id = re.search(r"/admin/sites/([0-9a-f-]{36})", owner.get("/admin/sites").text).group(1)
    colour = owner.post(f"/admin/sites/{site_id}", {"name": "Shop", "color": "red", "position": "left"})
    assert colour.status_code == 400
    assert "color must be #rrggbb" in html.unescape(colour.text)


def test_rotating_the_identity_secret_replaces_it_and_logs_no_secret(stack: Stack) -> None:
    people = new_people()
    with tenant_session(people["tenant_id"]) as session:
        site = session.scalars(select(Site)).one()
    owner = logged_in(stack.base_url, people["owner"])
    assert owner.post(f"/admin/sites/{site.id}/rotate").status_code == 303
    with tenant_session(people["tenant_id"]) as session:
        rotated = session.get(Site, site.id)
    assert rotated.identity_secret != site.identity_secret
    [entry] = audit_entries(people["tenant_id"], "site.rotate_identity_secret")
    assert site.identity_secret not in str(entry.detail) and rotated.identity_secret not in str(entry.detail)
    assert entry.detail["before"] == entry.detail["after"] == {"identity_secret": "(changed)"}
    assert "Rotate the identity secret?" in owner.get(f"/admin/sites/{site.id}").text  # the confirmation


# -- invitations ------------------------------------------------------------------------------------------------------


def test_an_invite_link_is_shown_once_works_once_and_logs_the_invitee_in(stack: Stack) -> None:
    people = new_people()
    owner = logged_in(stack.base_url, people["owner"])
    page = owner.post("/admin/agents/invite", {"email": "Nina@Example.test", "role": "agent"})
    assert page.status_code == 200
    link = link_in(page.text, f"{stack.base_url}/invite/")
    token = link.rsplit("/", 1)[1]
    with tenant_session(people["tenant_id"]) as session:
        invite = session.scalars(select(Invite).where(Invite.email == "nina@example.test")).one()
    assert invite.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert invite.expires_at - datetime.now(UTC) > timedelta(days=6, hours=23)
    assert token not in owner.get("/admin/agents").text  # shown once

    nina = Person(stack.base_url)
    form = nina.client.get(f"/invite/{token}")
    assert "Join" in form.text and "nina@example.test" in form.text
    nina.token = Person.csrf_of(form.text)
    short = nina.post(f"/invite/{token}", {"name": "Nina", "password": "short", "confirm": "short"})
    assert short.status_code == 400
    assert "at least 10 characters" in short.text
    joined = nina.post(
        f"/invite/{token}", {"name": "Nina", "password": "a long password", "confirm": "a long password"}
    )
    assert joined.status_code == 302 and joined.headers["location"].endswith("/console")
    assert nina.get("/console").status_code == 200

    again = httpx.get(link)
    assert again.status_code == 410
    assert "has been used already" in again.text
    assert (
        Person(stack.base_url).login({"email": "nina@example.test", "password": "a long password"}).status_code == 302
    )
    [accepted] = audit_entries(people["tenant_id"], "invite.accept")
    assert accepted.detail["email"] == "nina@example.test"


def test_an_expired_or_unknown_invite_link_says_so(stack: Stack) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["owner"]["id"]) as (session, owner):
        invite, token = agents.do_create_invite(session, owner, HERE, "late@x.test", "agent", ("agent",))
        # Seven days later: the clock is moved by hand, the only way to let a week pass in a test.
        session.execute(update(Invite).where(Invite.id == invite.id).values(expires_at=datetime.now(UTC)))
        session.commit()
    expired = httpx.get(f"{stack.base_url}/invite/{token}")
    assert expired.status_code == 410
    assert "This invitation has expired" in expired.text
    assert httpx.get(f"{stack.base_url}/invite/not-a-token").status_code == 404


def test_an_email_that_has_an_account_cannot_be_invited_twice(database_url: str) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        with pytest.raises(Conflict, match="already has an account"):
            agents.do_create_invite(session, admin, HERE, people["agent"]["email"], "agent", ("agent", "admin"))
        with pytest.raises(Forbidden):
            agents.do_create_invite(session, admin, HERE, "x@y.test", "owner", ("agent", "admin"))


# -- deactivation and roles ---------------------------------------------------------------------------------------


def test_a_deactivated_agent_is_logged_out_at_once_and_cannot_log_in_again(stack: Stack) -> None:
    people = new_people()
    agent = logged_in(stack.base_url, people["agent"])
    assert agent.get("/console").status_code == 200
    owner = logged_in(stack.base_url, people["owner"])
    assert owner.post(f"/admin/agents/{people['agent']['id']}/deactivate").status_code == 303

    after = agent.get("/console")
    assert after.status_code == 302 and "/login" in after.headers["location"]
    assert agent.get("/live/console").status_code == 401  # the live stream refuses the old cookie too
    assert Person(stack.base_url).login(people["agent"]).status_code == 401
    with tenant_session(people["tenant_id"]) as session:
        assert session.get(User, people["agent"]["id"]).presence == "offline"

    assert owner.post(f"/admin/agents/{people['agent']['id']}/reactivate").status_code == 303
    assert Person(stack.base_url).login(people["agent"]).status_code == 302


def test_role_rules_admins_owners_and_the_last_owner(database_url: str) -> None:
    people = new_people()
    tenant_id, owner_id = people["tenant_id"], people["owner"]["id"]
    with acting(tenant_id, people["admin"]["id"]) as (session, admin):
        with pytest.raises(Forbidden, match="Only an owner can make someone an owner"):
            agents.do_set_role(session, admin, HERE, people["agent"]["id"], "owner")
    with acting(tenant_id, people["admin"]["id"]) as (session, admin):
        with pytest.raises(Forbidden, match="Only an owner can change an owner"):
            agents.do_set_role(session, admin, HERE, owner_id, "agent")
    with acting(tenant_id, people["admin"]["id"]) as (session, admin):
        with pytest.raises(Forbidden):
            agents.do_set_active(session, admin, HERE, owner_id, False)
    with acting(tenant_id, people["admin"]["id"]) as (session, admin):
        agents.do_set_role(session, admin, HERE, people["agent"]["id"], "admin")  # admins manage agents and admins
    with acting(tenant_id, owner_id) as (session, owner):
        with pytest.raises(Conflict, match="The last owner cannot be demoted"):
            agents.do_set_role(session, owner, HERE, owner_id, "admin")
    with acting(tenant_id, owner_id) as (session, owner):
        with pytest.raises(Invalid, match="cannot deactivate yourself"):
            agents.do_set_active(session, owner, HERE, owner_id, False)
    with acting(tenant_id, people["admin"]["id"]) as (session, admin):
        with pytest.raises(Forbidden, match="Only an owner can transfer"):
            agents.do_transfer_ownership(session, admin, HERE, people["admin"]["id"])

    with acting(tenant_id, owner_id) as (session, owner):
        agents.do_transfer_ownership(session, owner, HERE, people["admin"]["id"])
    with tenant_session(tenant_id) as session:
        assert session.get(User, people["admin"]["id"]).role == "owner"
        assert session.get(User, owner_id).role == "admin"
    [entry] = audit_entries(tenant_id, "tenant.transfer_ownership")
    assert entry.detail["before"] == {"owner": people["owner"]["email"]}
    assert entry.detail["after"] == {"owner": people["admin"]["email"]}


def test_capacity_and_teams_of_an_agent(database_url: str) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        team = teams.do_create_team(session, admin, HERE, "Billing")
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        agents.do_update_agent(
            session, admin, HERE, people["agent"]["id"], {"max_chats": "4", "team_ids": [str(team.id)]}
        )
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        with pytest.raises(Invalid, match="between 0"):
            agents.do_update_agent(session, admin, HERE, people["agent"]["id"], {"max_chats": "-1"})
    with tenant_session(people["tenant_id"]) as session:
        assert session.get(User, people["agent"]["id"]).max_chats == 4
    [entry] = audit_entries(people["tenant_id"], "agent.update")
    assert entry.detail["before"] == {"max_chats": 0, "teams": []}
    assert entry.detail["after"] == {"max_chats": 4, "teams": ["Billing"]}


# -- teams, hours, labels -------------------------------------------------------------------------------------------


def test_teams_are_created_renamed_given_members_and_deleted(database_url: str) -> None:
    people = new_people()
    tenant_id, admin_id = people["tenant_id"], people["admin"]["id"]
    with acting(tenant_id, admin_id) as (session, admin):
        team = teams.do_create_team(session, admin, HERE, "  Sales  ")
    assert team.name == "Sales"
    with acting(tenant_id, admin_id) as (session, admin):
        with pytest.raises(Conflict, match="already"):
            teams.do_create_team(session, admin, HERE, "Sales")
    with acting(tenant_id, admin_id) as (session, admin):
        teams.do_update_team(
            session, admin, HERE, team.id, {"name": "Sales EU", "member_ids": [str(people["agent"]["id"])]}
        )
    conversation_id = new_conversation(tenant_id)
    with tenant_session(tenant_id) as session:
        session.get(Conversation, conversation_id).team_id = team.id
        session.commit()
    with acting(tenant_id, admin_id) as (session, admin):
        teams.do_delete_team(session, admin, HERE, team.id)
    with tenant_session(tenant_id) as session:
        assert session.get(Team, team.id) is None
        assert session.get(Conversation, conversation_id).team_id is None
    [renamed] = audit_entries(tenant_id, "team.update")
    assert renamed.detail["before"] == {"name": "Sales", "members": []}
    assert renamed.detail["after"] == {"name": "Sales EU", "members": [people["agent"]["email"]]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hours_mon", "9:00-17:00", "is not a time"),
        ("hours_tue", "17:00-09:00", "ends before it starts"),
        ("hours_wed", "09:00-13:00, 12:00-18:00", "overlap"),
        ("hours_thu", "09:00", "start-end"),
        ("timezone", "Mars/Olympus", "Unknown time zone"),
        ("holidays", "2026-02-30", "not a date"),
    ],
)
def test_business_hours_that_make_no_sense_are_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        hours.parse({"timezone": "Europe/Paris", field: value})


def test_business_hours_are_kept_sorted_per_team_and_for_the_tenant(database_url: str) -> None:
    people = new_people()
    tenant_id, admin_id = people["tenant_id"], people["admin"]["id"]
    with acting(tenant_id, admin_id) as (session, admin):
        team = teams.do_create_team(session, admin, HERE, "Night")
    form = {
        "timezone": "Asia/Shanghai",
        "hours_mon": "13:00-17:30, 09:00-12:00",
        "hours_sat": "10:00-24:00",
        "holidays": "2026-10-01\n2026-01-01",
    }
    with acting(tenant_id, admin_id) as (session, admin):
        hours.do_save_schedule(session, admin, HERE, None, form)
    with acting(tenant_id, admin_id) as (session, admin):
        hours.do_save_schedule(session, admin, HERE, team.id, {"timezone": "UTC", "hours_sun": "00:00-08:00"})
    with tenant_session(tenant_id) as session:
        default = hours.schedule_of(session, None)
        night = hours.schedule_of(session, team.id)
    assert default.timezone == "Asia/Shanghai"
    assert default.weekly["mon"] == [["09:00", "12:00"], ["13:00", "17:30"]]
    assert default.weekly["sat"] == [["10:00", "24:00"]] and default.weekly["sun"] == []
    assert default.holidays == ["2026-01-01", "2026-10-01"]
    assert night.weekly["sun"] == [["00:00", "08:00"]]
    assert "Asia/Shanghai" in hours.timezones()


def test_labels_renamed_or_deleted_change_the_conversations_that_carry_them(database_url: str) -> None:
    people = new_people()
    tenant_id, admin_id = people["tenant_id"], people["admin"]["id"]
    with acting(tenant_id, admin_id) as (session, admin):
        label = labels.do_create_label(session, admin, HERE, {"name": "  Billing  Issue ", "color": "#FF0000"})
    assert (label.name, label.color) == ("billing issue", "#ff0000")
    with acting(tenant_id, admin_id) as (session, admin):
        with pytest.raises(Conflict):
            labels.do_create_label(session, admin, HERE, {"name": "billing issue"})
    with acting(tenant_id, admin_id) as (session, admin):
        with pytest.raises(Invalid, match="colour"):
            labels.do_create_label(session, admin, HERE, {"name": "x", "color": "red"})
    conversation_id = new_conversation(tenant_id)
    with tenant_session(tenant_id) as session:
        session.get(Conversation, conversation_id).labels = ["billing issue", "vip"]
        session.commit()
    with acting(tenant_id, admin_id) as (session, admin):
        labels.do_update_label(session, admin, HERE, label.id, {"name": "invoices", "color": "#00ff00"})
    with tenant_session(tenant_id) as session:
        assert session.get(Conversation, conversation_id).labels == ["invoices", "vip"]
    with acting(tenant_id, admin_id) as (session, admin):
        labels.do_delete_label(session, admin, HERE, label.id)
    with tenant_session(tenant_id) as session:
        assert session.get(Conversation, conversation_id).labels == ["vip"]


# -- settings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "form", "message"),
    [
        ("routing", {"strategy": "random"}, "strategy must be one of"),
        ("routing", {"missed_after_seconds": "soon"}, "Mark missed after waiting \\(seconds\\) must be a whole number"),
        ("routing", {"idle_resolve_seconds": "-1"}, "between 0 and 604800"),
        ("security", {"session_minutes": "1"}, "between 5 and 43200"),
        ("security", {"password_min_length": "six"}, "whole number"),
        ("security", {"console_networks": "10.0.0.0/33"}, "not an address range"),
        ("security", {"console_networks": "10.0.0.1/8"}, "not an address range"),
    ],
)
def test_settings_of_the_wrong_shape_are_refused(section: str, form: dict[str, str], message: str) -> None:
    with pytest.raises(tenant_settings.InvalidSetting, match=message):
        tenant_settings.PARSERS[section](form)


def test_settings_start_from_the_defaults_and_keep_what_was_saved(database_url: str) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        do_update_settings(session, admin, HERE, "routing", {"strategy": "least_busy"})
    with tenant_session(people["tenant_id"]) as session:
        saved = tenant_settings.effective(session.get(Tenant, people["tenant_id"]).settings)
    assert saved["routing"] == {"auto_assign": False, "strategy": "least_busy"}
    assert saved["security"] == tenant_settings.DEFAULTS["security"]
    [entry] = audit_entries(people["tenant_id"], "settings.routing")
    assert entry.detail["before"] == {"auto_assign": True, "strategy": "round_robin"}
    assert entry.detail["after"] == {"auto_assign": False, "strategy": "least_busy"}


def test_saving_the_routing_form_keeps_the_routing_rules_of_their_own_page(database_url: str) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        team = teams.do_create_team(session, admin, HERE, "China")
        rule = rules.do_add_rule(session, admin, HERE, {"when": "language", "value": "zh", "team_id": str(team.id)})
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        do_update_settings(session, admin, HERE, "routing", {"strategy": "least_busy"})
    with tenant_session(people["tenant_id"]) as session:
        stored = session.get(Tenant, people["tenant_id"]).settings["routing"]
    assert [r["id"] for r in stored["rules"]] == [rule["id"]]


def test_routing_time_limits_are_kept_and_blank_ones_fall_back_to_the_installation(database_url: str) -> None:
    people = new_people()
    form = {
        "strategy": "round_robin",
        "open_timeout_seconds": "90",
        "missed_after_seconds": "",  # blank: the installation's default
        "idle_resolve_seconds": "0",  # never
    }  # reopen_after_idle unticked
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        do_update_settings(session, admin, HERE, "routing", form)
    with tenant_session(people["tenant_id"]) as session:
        saved = tenant_settings.effective(session.get(Tenant, people["tenant_id"]).settings)["routing"]
    assert saved == {
        "auto_assign": False,
        "strategy": "round_robin",
        "open_timeout_seconds": 90,
        "idle_resolve_seconds": 0,
        "reopen_after_idle": False,
    }


def test_console_networks_that_would_lock_the_admin_out_are_refused(database_url: str) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        with pytest.raises(Invalid, match=r"Your own address \(127.0.0.1\) is outside these ranges"):
            do_update_settings(session, admin, HERE, "security", {"console_networks": "192.0.2.0/24"})
    with acting(people["tenant_id"], people["admin"]["id"]) as (session, admin):
        saved = do_update_settings(session, admin, HERE, "security", {"console_networks": "127.0.0.0/8, ::1"})
    assert saved["console_networks"] == ["127.0.0.0/8", "::1/128"]


def test_the_console_and_admin_pages_refuse_addresses_outside_the_allowed_ranges(stack: Stack) -> None:
    people = new_people()
    agent = logged_in(stack.base_url, people["agent"])
    # Saved from an office at 192.0.2.5: this test's 127.0.0.1 is outside.
    office = Client("192.0.2.5", "pytest")
    with acting(people["tenant_id"], people["owner"]["id"]) as (session, owner):
        do_update_settings(session, owner, office, "security", {"console_networks": "192.0.2.0/24"})
    refused = agent.get("/console")
    assert refused.status_code == 403
    assert "Your address (127.0.0.1) is not in the address ranges your admin allows" in html.unescape(refused.text)
    assert logged_in(stack.base_url, people["owner"]).get("/admin/sites").status_code == 403


def test_a_login_ends_after_the_tenants_session_lifetime(stack: Stack) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["owner"]["id"]) as (session, owner):
        do_update_settings(session, owner, HERE, "security", {"session_minutes": "30"})
    agent = logged_in(stack.base_url, people["agent"])
    assert agent.get("/console").status_code == 200
    # 31 minutes later: the session cookie is signed with the test's SECRET_KEY, so the test can age it.
    app = app_for_reading()
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    name = app.config["SESSION_COOKIE_NAME"]
    data = serializer.loads(agent.client.cookies[name])
    data["login_at"] -= 31 * 60
    agent.client.cookies.set(name, serializer.dumps(data), domain="127.0.0.1")
    expired = agent.get("/console")
    assert expired.status_code == 302 and "expired=1" in expired.headers["location"]
    assert "Your session has expired" in agent.get(expired.headers["location"]).text


def test_new_passwords_follow_the_tenants_minimum_length(stack: Stack) -> None:
    people = new_people()
    with acting(people["tenant_id"], people["owner"]["id"]) as (session, owner):
        do_update_settings(session, owner, HERE, "security", {"password_min_length": "16"})
    agent = logged_in(stack.base_url, people["agent"])
    current = people["agent"]["password"]
    short = agent.post(
        "/account/password", {"current": current, "password": "fifteen chars!!", "confirm": "fifteen chars!!"}
    )
    assert short.status_code == 400
    assert "at least 16 characters" in short.text
    new = "sixteen chars ok"
    assert agent.post("/account/password", {"current": current, "password": new, "confirm": new}).status_code == 200
    assert Person(stack.base_url).login({"email": people["agent"]["email"], "password": new}).status_code == 302


# -- API keys -------------------------------------------------------------------------------------------------------


def test_an_api_key_is_shown_once_stored_hashed_and_encrypted_and_gone_once_revoked(stack: Stack) -> None:
    people = new_people()
    owner = logged_in(stack.base_url, people["owner"])
    page = owner.post("/admin/api-keys", {"name": "CRM sync"})
    assert page.status_code == 200
    full = re.search(r'id="new-key">([^<]+)<', page.text).group(1)
    prefix, secret = full.split(".", 1)
    listed = owner.get("/admin/api-keys").text
    assert prefix in listed and secret not in listed

    with tenant_session(people["tenant_id"]) as session:
        key = session.scalars(select(ApiKey)).one()
    assert key.prefix == prefix
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in key.secret_encrypted
    secret_key = app_for_reading().config["SECRET_KEY"]
    assert api_keys.secret_of(key, secret_key) == secret
    with system_session() as session:
        assert api_keys.find_key(session, full).id == key.id
        assert api_keys.find_key(session, prefix + ".wrong") is None
    [created] = audit_entries(people["tenant_id"], "api_key.create")
    assert secret not in str(created.detail)

    assert owner.post(f"/admin/api-keys/{key.id}/revoke").status_code == 303
    assert prefix not in owner.get("/admin/api-keys").text
    with system_session() as session:
        assert api_keys.find_key(session, full) is None


# -- the audit log ------------------------------------------------------------------------------------------------


def test_logins_and_admin_changes_are_in_the_audit_log_with_ip_and_browser(stack: Stack) -> None:
    people = new_people()
    email = people["admin"]["email"]
    assert Person(stack.base_url).login({"email": email, "password": "wrong"}).status_code == 401
    admin = logged_in(stack.base_url, people["admin"])
    assert admin.post("/admin/labels", {"name": "refunds", "color": "#123456"}).status_code == 303

    failed = audit_entries(people["tenant_id"], "login.failure")
    success = audit_entries(people["tenant_id"], "login.success")
    [change] = audit_entries(people["tenant_id"], "label.create")
    for entry in (failed[-1], success[-1], change):
        assert entry.ip == "127.0.0.1"
        assert entry.user_agent == USER_AGENT
    assert failed[-1].detail == {"email": email, "source": "web"}
    assert success[-1].actor_id == people["admin"]["id"]
    assert change.detail["after"] == {"name": "refunds", "color": "#123456"}

    found = admin.get("/admin/audit", params={"action": "login", "actor": email.split("@")[0]}).text
    assert found.count("login.failure") == 1 and found.count("login.success") == 1
    assert "label.create" not in found
    exported = admin.get("/admin/audit.csv", params={"action": "label"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["actor"], r["action"], r["ip"], r["user_agent"]) for r in rows] == [
        (email, "label.create", "127.0.0.1", USER_AGENT)
    ]


# -- SaaS: tenants --------------------------------------------------------------------------------------------------


def test_a_suspended_tenant_is_refused_until_resumed(stack: Stack, saas_url: str) -> None:
    people = new_people()
    agent = logged_in(saas_url, people["agent"])
    operator = logged_in(saas_url, platform_operator())
    assert operator.get("/console").status_code == 403  # operators see no conversations
    tenant_id = people["tenant_id"]
    assert operator.post(f"/platform/tenants/{tenant_id}/suspend").status_code == 303

    ended = agent.get("/console")
    assert ended.status_code == 302 and "/login" in ended.headers["location"]
    assert "This account is suspended" in html.unescape(agent.get(ended.headers["location"]).text)
    refused = Person(saas_url).login(people["owner"])
    assert refused.status_code == 403 and "This account is suspended" in html.unescape(refused.text)
    widget = widget_session(saas_url, people["site_key"])
    assert widget.status_code == 403 and widget.json()["error"] == "tenant_suspended"

    assert operator.post(f"/platform/tenants/{tenant_id}/resume").status_code == 303
    assert widget_session(saas_url, people["site_key"]).status_code == 200
    assert Person(saas_url).login(people["owner"]).status_code == 302


def test_an_operator_creates_a_tenant_whose_owner_can_log_in(stack: Stack, saas_url: str) -> None:
    operator = logged_in(saas_url, platform_operator())
    slug = "co-" + secrets.token_hex(3)
    page = operator.post("/platform", {"slug": slug, "name": "Co", "owner_email": f"boss@{slug}.test"})
    assert page.status_code == 200
    email, password = re.search(r'id="new-owner">([^<]+)<', page.text).group(1).split(" / ")
    assert Person(saas_url).login({"email": email, "password": password}).status_code == 302
    assert operator.post("/platform", {"slug": "platform", "name": "x", "owner_email": "y@z.test"}).status_code == 400


def test_an_owner_deletes_the_tenant_in_saas_mode_by_typing_its_name(stack: Stack, saas_url: str) -> None:
    people = new_people()
    conversation_id = new_conversation(people["tenant_id"])
    owner = logged_in(saas_url, people["owner"])
    wrong = owner.post("/admin/tenant", {"confirm": "yes"})
    assert wrong.status_code == 400 and f"Type the tenant's short name, {people['slug']}" in html.unescape(wrong.text)
    gone = owner.post("/admin/tenant", {"confirm": people["slug"]})
    assert gone.status_code == 303
    assert "deleted" in owner.get(gone.headers["location"]).text
    with system_session() as session:
        assert session.get(Tenant, people["tenant_id"]) is None
        assert session.get(Conversation, conversation_id) is None
        [entry] = session.scalars(
            select(AuditLog).where(
                AuditLog.action == "tenant.delete", AuditLog.detail["tenant"].astext == people["slug"]
            )
        )
    assert entry.tenant_id is None and entry.detail["by"] == people["owner"]["email"]
