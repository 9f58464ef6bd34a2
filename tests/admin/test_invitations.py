"""Proactive invitations in the site admin (docs/widget.md, "Invitations"): an admin adds, switches off and deletes
rules and sets the caps, over HTTP as a browser without JavaScript; what is saved reaches the widget's session
response, every change is in the audit log, and rules that make no sense are refused with a message."""

from __future__ import annotations

import html
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from desk import widget_settings
from desk.db import system_session, tenant_session
from desk.models import AuditLog, Site
from tests.admin.conftest import Person, logged_in
from tests.conftest import Stack
from tests.factories import new_people

PRICING = {"match": "starts", "path": "/pricing", "seconds": "30", "text_en": "Need help choosing a plan?", "on": "on"}


def site_of(tenant_id: uuid.UUID) -> Site:
    with tenant_session(tenant_id) as session:
        return session.scalars(select(Site)).one()


def widget_settings_of(stack: Stack, site_key: str) -> dict[str, Any]:
    body = {"site_key": site_key, "page": {"url": "https://shop.test/pricing", "title": "Pricing"}}
    return httpx.post(f"{stack.base_url}/api/v1/widget/session", json=body, timeout=10).json()["widget"]


def owner_of_a_new_tenant(stack: Stack) -> tuple[dict[str, Any], Person, Site]:
    people = new_people()
    return people, logged_in(stack.base_url, people["owner"]), site_of(people["tenant_id"])


def test_an_added_invitation_reaches_the_widget_with_the_default_caps(stack: Stack) -> None:
    people, owner, site = owner_of_a_new_tenant(stack)

    added = owner.post(f"/admin/sites/{site.id}/invitations", {**PRICING, "text_zh": "需要帮您选择套餐吗？"})

    assert added.status_code == 303
    page = html.unescape(owner.get(added.headers["location"]).text)
    assert "Invitation added." in page and "Need help choosing a plan?" in page
    [rule] = widget_settings_of(stack, str(people["site_key"]))["invitations"]["rules"]
    assert {k: v for k, v in rule.items() if k != "id"} == {
        "match": "starts",
        "path": "/pricing",
        "seconds": 30,
        "text": {"en": "Need help choosing a plan?", "zh": "需要帮您选择套餐吗？"},
        "on": True,
    }
    invitations = widget_settings_of(stack, str(people["site_key"]))["invitations"]
    assert (invitations["hours"], invitations["per_session"]) == (24, 1)


def test_a_site_without_invitations_sends_none_to_the_widget(stack: Stack) -> None:
    people, _owner, _site = owner_of_a_new_tenant(stack)

    assert "invitations" not in widget_settings_of(stack, str(people["site_key"]))


def test_invitations_are_switched_off_deleted_and_capped_and_each_change_is_audited(stack: Stack) -> None:
    people, owner, site = owner_of_a_new_tenant(stack)
    owner.post(f"/admin/sites/{site.id}/invitations", PRICING)
    owner.post(f"/admin/sites/{site.id}/invitations", {**PRICING, "match": "equals", "path": "/about"})
    rule_id = widget_settings.invitations_of(site_of(people["tenant_id"]).widget)["rules"][0]["id"]

    assert owner.post(f"/admin/sites/{site.id}/invitations/{rule_id}/switch", {"on": ""}).status_code == 303
    assert owner.post(f"/admin/sites/{site.id}/invitation-caps", {"hours": "48", "per_session": "2"}).status_code == 303
    invitations = widget_settings_of(stack, str(people["site_key"]))["invitations"]
    assert [(r["path"], r["on"]) for r in invitations["rules"]] == [("/pricing", False), ("/about", True)]
    assert (invitations["hours"], invitations["per_session"]) == (48, 2)

    assert owner.post(f"/admin/sites/{site.id}/invitations/{rule_id}/delete").status_code == 303
    rules = widget_settings_of(stack, str(people["site_key"]))["invitations"]["rules"]
    assert [r["path"] for r in rules] == ["/about"]
    with system_session() as session:
        entries = list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.tenant_id == people["tenant_id"], AuditLog.action == "site.update")
                .order_by(AuditLog.id)
            )
        )
    assert len(entries) == 5  # two added, one switched off, the caps, one deleted
    assert "/about" in str(entries[-1].detail) and "/pricing" in str(entries[-2].detail)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": ""}, "The page path must be 1 to 200 characters"),
        ({"path": "pricing"}, "The page path must begin with /"),
        ({"match": "regex"}, "The page condition must be one of starts, contains, equals"),
        ({"seconds": "601"}, "Seconds on the page must be from 0 to 600, not 601"),
        ({"seconds": "soon"}, "Seconds on the page must be a whole number from 0 to 600"),
        ({"text_en": ""}, "An invitation needs its message, in English or Chinese"),
        ({"text_en": "x" * 301}, "The invitation's text (en) must be at most 300 characters"),
    ],
)
def test_an_invitation_that_makes_no_sense_is_refused_with_a_message(
    stack: Stack, change: dict[str, str], message: str
) -> None:
    people, owner, site = owner_of_a_new_tenant(stack)

    refused = owner.post(f"/admin/sites/{site.id}/invitations", {**PRICING, **change})

    assert refused.status_code == 400
    assert message in html.unescape(refused.text)
    assert "invitations" not in (site_of(people["tenant_id"]).widget or {})


def test_caps_out_of_range_are_refused_and_a_site_holds_at_most_20_invitations(stack: Stack) -> None:
    _people, owner, site = owner_of_a_new_tenant(stack)

    caps = owner.post(f"/admin/sites/{site.id}/invitation-caps", {"hours": "0", "per_session": "1"})
    assert caps.status_code == 400
    assert "Hours between invitations must be from 1 to 720, not 0" in html.unescape(caps.text)

    for n in range(widget_settings.INVITATIONS):
        assert owner.post(f"/admin/sites/{site.id}/invitations", {**PRICING, "path": f"/p{n}"}).status_code == 303
    one_more = owner.post(f"/admin/sites/{site.id}/invitations", PRICING)
    assert one_more.status_code == 400
    assert "A site has at most 20 invitations: delete one first." in html.unescape(one_more.text)


def test_saving_the_sites_settings_keeps_its_invitations(stack: Stack) -> None:
    people, owner, site = owner_of_a_new_tenant(stack)
    owner.post(f"/admin/sites/{site.id}/invitations", PRICING)

    saved = owner.post(f"/admin/sites/{site.id}", {"name": "Shop", "color": "#112233", "position": "left"})

    assert saved.status_code == 303
    widget = widget_settings_of(stack, str(people["site_key"]))
    assert widget["color"] == "#112233"
    assert [rule["path"] for rule in widget["invitations"]["rules"]] == ["/pricing"]
