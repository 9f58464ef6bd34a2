"""The business hours the widget is told (docs/protocol.md, step 1's `hours`) are those of the team the routing rules
would give the visitor's conversation, so a pre-chat choice that leads to a closed team gets the message form."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from desk import audit, widget_settings
from desk.actions import hours, rules
from desk.db import system_session, tenant_session
from desk.models import Site, User
from tests.clients import session as widget_session
from tests.conftest import Stack
from tests.factories import new_team

HERE = audit.Client("127.0.0.1", "pytest")
ALWAYS = {"timezone": "UTC", **{f"hours_{day}": "00:00-24:00" for day in hours.WEEKDAYS}}
NEVER = {"timezone": "UTC", **{f"hours_{day}": "" for day in hours.WEEKDAYS}}


def tenant_whose_support_team_is_closed(stack: Stack) -> str:
    """A tenant open round the clock, but its Support team, where the pre-chat choice "Support" leads, never is."""
    site_key = str(stack.bootstrap()["site_key"])
    with system_session() as session:
        site = session.scalars(select(Site).where(Site.site_key == site_key)).one()
        form = {"prechat_enabled": "on", "prechat_options": "Sales\nSupport"}
        site.widget = {**(site.widget or {}), "prechat": widget_settings.parse_prechat(form)}
        tenant_id: uuid.UUID = site.tenant_id
        session.commit()
    support = new_team(tenant_id, "Support")
    with tenant_session(tenant_id) as session:
        owner = session.scalars(select(User).where(User.role == "owner")).one()
        hours.do_save_schedule(session, owner, HERE, None, ALWAYS)
        hours.do_save_schedule(session, owner, HERE, support, NEVER)
        rules.do_add_rule(session, owner, HERE, {"when": "pre_chat", "value": "Support", "team_id": str(support)})
    return site_key


def choose(stack: Stack, token: str, choice: str) -> dict[str, object]:
    body = {"visitor_token": token, "choice": choice}
    response = httpx.post(f"{stack.base_url}/api/v1/widget/prechat", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_choice_that_leads_to_a_closed_team_is_told_the_team_is_out(stack: Stack) -> None:
    site_key = tenant_whose_support_team_is_closed(stack)
    support = widget_session(stack.base_url, site_key).json()
    sales = widget_session(stack.base_url, site_key).json()
    assert support["hours"]["open"] is True  # no choice yet: the tenant's hours

    assert choose(stack, support["visitor_token"], "Support")["hours"]["open"] is False
    assert choose(stack, sales["visitor_token"], "Sales")["hours"]["open"] is True

    assert widget_session(stack.base_url, site_key, support["visitor_token"]).json()["hours"]["open"] is False
    assert widget_session(stack.base_url, site_key, sales["visitor_token"]).json()["hours"]["open"] is True
