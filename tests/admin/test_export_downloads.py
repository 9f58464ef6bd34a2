"""The admin panel's export page (docs/admin.md, "Export"): besides the conversations, the agents and the settings
as JSON, without secrets; admins and owners only, each download in the audit log."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select

from desk.actions import canned, labels, teams
from desk.audit import Client
from desk.db import system_session, tenant_session
from desk.models import AuditLog, Site, User
from tests.admin.conftest import logged_in
from tests.conftest import Stack
from tests.factories import new_people


def secrets_of(tenant_id: uuid.UUID) -> list[str]:
    """What must never leave: password hashes and the sites' identity secrets."""
    with tenant_session(tenant_id) as session:
        hashes = list(session.scalars(select(User.password_hash)))
        return hashes + list(session.scalars(select(Site.identity_secret)))


def with_settings(people: dict[str, Any]) -> None:
    """A team with the agent in it, a label and a shared saved reply, made by the admin's own actions."""
    tenant_id, owner_id = people["tenant_id"], people["owner"]["id"]
    with tenant_session(tenant_id) as session:
        owner = session.get(User, owner_id)
        team = teams.do_create_team(session, owner, Client(), "Billing")
        teams.do_update_team(
            session, owner, Client(), team.id, {"name": "Billing", "member_ids": [str(people["agent"]["id"])]}
        )
        labels.do_create_label(session, owner, Client(), {"name": "refund", "color": "#ff0000"})
        canned.do_create_canned(session, owner_id, "/thanks", "Thank you for waiting!", shared=True)


def test_the_export_page_offers_conversations_agents_and_settings(stack: Stack) -> None:
    people = new_people()
    page = logged_in(stack.base_url, people["admin"]).get("/admin/export")
    assert page.status_code == 200
    for link in ("/admin/export/conversations.json", "/admin/export/conversations.csv",
                 "/admin/export/agents.json", "/admin/export/settings.json"):  # fmt: skip
        assert link in page.text


def test_the_agents_download_lists_everyone_without_their_passwords(stack: Stack) -> None:
    people = new_people()
    with_settings(people)
    response = logged_in(stack.base_url, people["admin"]).get("/admin/export/agents.json")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="agents-{people["slug"]}.json"'
    exported = response.json()
    by_email = {a["email"]: a for a in exported["agents"]}
    assert set(by_email) == {people[role]["email"] for role in ("owner", "admin", "agent")}
    agent = by_email[people["agent"]["email"]]
    assert (agent["role"], agent["active"], agent["teams"], agent["two_factor"]) == ("agent", True, ["Billing"], False)
    for secret in secrets_of(people["tenant_id"]):
        assert secret not in response.text
    assert not {"password", "password_hash", "totp_secret_encrypted", "recovery_codes"} & set(agent)


def test_the_settings_download_holds_the_tenants_setup_without_secrets(stack: Stack) -> None:
    people = new_people()
    with_settings(people)
    response = logged_in(stack.base_url, people["owner"]).get("/admin/export/settings.json")
    assert response.status_code == 200
    exported = json.loads(response.text)
    assert exported["format"] == "deskbell.settings/1"
    assert [s["site_key"] for s in exported["sites"]] == [people["site_key"]]
    assert exported["teams"] == [{"name": "Billing", "members": [people["agent"]["email"]]}]
    assert exported["labels"] == [{"name": "refund", "color": "#ff0000"}]
    assert exported["canned_responses"] == [{"shortcut": "thanks", "body": "Thank you for waiting!", "owner": None}]
    assert exported["settings"]["routing"] == {"auto_assign": True, "strategy": "round_robin"}
    assert exported["settings"]["security"]["password_min_length"] == 10
    for secret in secrets_of(people["tenant_id"]):
        assert secret not in response.text


def test_agents_cannot_download_and_each_download_is_audited(stack: Stack) -> None:
    people = new_people()
    agent = logged_in(stack.base_url, people["agent"])
    assert agent.get("/admin/export/agents.json").status_code == 403
    assert agent.get("/admin/export/settings.json").status_code == 403
    admin = logged_in(stack.base_url, people["admin"])
    assert admin.get("/admin/export/agents.json").status_code == 200
    assert admin.get("/admin/export/settings.json").status_code == 200
    with system_session() as session:
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.tenant_id == people["tenant_id"], AuditLog.action.like("export.%"))
        ).all()
    assert sorted(actions) == ["export.agents", "export.settings"]
