"""The site admin's pre-chat form settings (docs/widget.md, "Pre-chat form"): saved, audited, shown again, and
refused with a message when they make no sense."""

from __future__ import annotations

import html
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from desk.db import system_session, tenant_session
from desk.models import AuditLog, Site
from tests.admin.conftest import logged_in
from tests.conftest import Stack
from tests.factories import new_people

GOOD = {
    "prechat_enabled": "on",
    "prechat_name": "optional",
    "prechat_email": "required",
    "prechat_question_en": "What can we help with?",
    "prechat_question_zh": "我们能帮您什么？",
    "prechat_options": "Sales\r\n Support \r\n\r\n",
}


def the_site(tenant_id: uuid.UUID) -> Site:
    with tenant_session(tenant_id) as session:
        site = session.scalars(select(Site)).one()
        session.expunge(site)
        return site


def test_an_admin_turns_on_the_pre_chat_form_and_the_change_is_audited(stack: Stack) -> None:
    people = new_people()
    site = the_site(people["tenant_id"])
    admin = logged_in(stack.base_url, people["admin"])

    saved = admin.post(f"/admin/sites/{site.id}/prechat", GOOD)

    assert saved.status_code == 303
    assert the_site(people["tenant_id"]).widget["prechat"] == {
        "enabled": True,
        "name": "optional",
        "email": "required",
        "question": {"en": "What can we help with?", "zh": "我们能帮您什么？"},
        "options": ["Sales", "Support"],
    }
    page = html.unescape(admin.get(saved.headers["location"]).text)
    assert "Pre-chat form saved." in page
    assert 'name="prechat_enabled" value="on" checked' in page
    assert "Sales\nSupport</textarea>" in page
    with system_session() as session:
        entries = session.scalars(
            select(AuditLog).where(AuditLog.tenant_id == people["tenant_id"], AuditLog.action == "site.update")
        ).all()
    [entry] = entries
    assert entry.actor_id == people["admin"]["id"]
    assert "prechat" not in (entry.detail["before"]["widget"] or {})
    assert entry.detail["after"]["widget"]["prechat"]["options"] == ["Sales", "Support"]


def test_saving_the_sites_other_settings_keeps_the_pre_chat_form(stack: Stack) -> None:
    people = new_people()
    site = the_site(people["tenant_id"])
    admin = logged_in(stack.base_url, people["admin"])
    assert admin.post(f"/admin/sites/{site.id}/prechat", GOOD).status_code == 303

    saved = admin.post(f"/admin/sites/{site.id}", {"name": "Renamed", "color": "#112233", "position": "left"})

    assert saved.status_code == 303
    widget = the_site(people["tenant_id"]).widget
    assert widget["color"] == "#112233"
    assert widget["prechat"]["options"] == ["Sales", "Support"]


def test_turning_the_form_off_keeps_its_settings_for_next_time(stack: Stack) -> None:
    people = new_people()
    site = the_site(people["tenant_id"])
    admin = logged_in(stack.base_url, people["admin"])
    assert admin.post(f"/admin/sites/{site.id}/prechat", GOOD).status_code == 303

    off = {k: v for k, v in GOOD.items() if k != "prechat_enabled"}  # an unticked box is not sent
    assert admin.post(f"/admin/sites/{site.id}/prechat", off).status_code == 303

    prechat = the_site(people["tenant_id"]).widget["prechat"]
    assert prechat["enabled"] is False
    assert prechat["email"] == "required" and prechat["options"] == ["Sales", "Support"]
    page = admin.get(f"/admin/sites/{site.id}").text
    assert 'name="prechat_enabled" value="on" >' in page  # shown unticked


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prechat_options": "Sales"}, "The pre-chat question needs 2 to 10 options, one a line, not 1."),
        ({"prechat_options": "\n".join(f"Team {n}" for n in range(11))}, "needs 2 to 10 options, one a line, not 11"),
        ({"prechat_options": "Sales\n" + "x" * 61}, "A pre-chat option must be at most 60 characters (one has 61)."),
        ({"prechat_options": "Sales\nsales"}, "The pre-chat options must all be different."),
        ({"prechat_options": ""}, "The pre-chat question needs 2 to 10 options, one a line."),
        ({"prechat_email": "always"}, "Pre-chat email must be one of off, optional, required, not 'always'."),
        ({"prechat_question_en": "?" * 201}, "Pre-chat question (en) must be at most 200 characters."),
        (
            {"prechat_name": "off", "prechat_email": "off", "prechat_options": "", "prechat_question_en": "",
             "prechat_question_zh": ""},
            "The pre-chat form needs something to ask: a name, an email or a question with options.",
        ),
    ],
)
def test_pre_chat_settings_that_make_no_sense_are_refused_with_a_message(
    stack: Stack, change: dict[str, Any], message: str
) -> None:
    people = new_people()
    site = the_site(people["tenant_id"])
    admin = logged_in(stack.base_url, people["admin"])

    refused = admin.post(f"/admin/sites/{site.id}/prechat", {**GOOD, **change})

    assert refused.status_code == 400
    assert message in html.unescape(refused.text)
    assert the_site(people["tenant_id"]).widget == site.widget  # nothing saved
    assert 'name="prechat_enabled" value="on" checked' in refused.text  # what the admin typed is still there
