"""The visitor panel beside a conversation (docs/architecture.md, "The console: search and the visitor panel"):
the visitor's local time, the site's custom attributes and the visitor's other conversations, from the widget's
session requests and the store worker's action, seen on the real console page."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from desk.actions.messages import Inbound, do_store_messages
from desk.db import system_session, tenant_session
from desk.models import Conversation, Tenant
from desk.models import Visitor as VisitorRow
from tests.clients import logged_in_agent
from tests.conftest import Stack
from web.agent.search import local_time


def session_request(stack: Stack, tenant: dict[str, Any], **fields: Any) -> httpx.Response:
    body = {"site_key": tenant["site_key"], "page": {"url": "https://shop.test/", "title": "Shop"}, **fields}
    return httpx.post(f"{stack.base_url}/api/v1/widget/session", json=body, timeout=10)


def attributes_of(visitor_id: str) -> dict[str, str]:
    with system_session() as session:
        visitor = session.scalar(select(VisitorRow).where(VisitorRow.id == uuid.UUID(visitor_id)))
        return visitor.context.get("attributes", {})


def say(tenant: dict[str, Any], visitor_id: str, body: str) -> uuid.UUID:
    """A visitor message stored by the store worker's action; returns its conversation."""
    with system_session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == tenant["tenant"]))
    with tenant_session(tenant_id) as session:
        [stored] = do_store_messages(session, [Inbound(uuid.UUID(visitor_id), uuid.uuid4().hex, body)])
        session.commit()
        return stored.message.conversation_id


def resolve(conversation_id: uuid.UUID) -> None:
    """Resolved, so the visitor's next message starts a new conversation (the actions are another part's)."""
    with system_session() as session:
        session.get(Conversation, conversation_id).status = "resolved"
        session.commit()


def panel(page: str) -> str:
    start = page.index('<details class="visitor-panel')
    return page[start : page.index("</details>", start)]


def test_custom_attributes_are_kept_as_strings_merged_and_limited(stack: Stack) -> None:
    tenant = stack.bootstrap()
    given = {
        "plan": "pro",
        "seats": 5,
        "trial": True,
        "ratio": 1.5,
        "nested": {"a": 1},
        "k" * 65: "x",
        "long": "v" * 600,
    }
    first = session_request(stack, tenant, attributes=given).json()
    assert attributes_of(first["visitor_id"]) == {
        "plan": "pro",
        "seats": "5",
        "trial": "true",
        "ratio": "1.5",
        "long": "v" * 500,
    }

    # A later page sets some again, removes one with null, and one that sets none keeps them all.
    token = first["visitor_token"]
    session_request(stack, tenant, visitor_token=token, attributes={"plan": "team", "seats": None})
    session_request(stack, tenant, visitor_token=token, attributes={})
    session_request(stack, tenant, visitor_token=token)
    assert attributes_of(first["visitor_id"]) == {"plan": "team", "trial": "true", "ratio": "1.5", "long": "v" * 500}

    many = session_request(stack, tenant, attributes={f"a{i:03}": str(i) for i in range(80)}).json()
    assert sorted(attributes_of(many["visitor_id"])) == [f"a{i:03}" for i in range(50)]

    refused = session_request(stack, tenant, attributes=["plan", "pro"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_attributes"


def test_local_time_is_the_time_in_the_visitors_zone_with_its_offset() -> None:
    now = datetime(2026, 1, 15, 14, 5, tzinfo=UTC)
    assert local_time("Asia/Shanghai", now) == "22:05 (UTC+8)"
    assert local_time("Asia/Kolkata", now) == "19:35 (UTC+5:30)"
    assert local_time("America/St_Johns", now) == "10:35 (UTC-3:30)"
    assert local_time("Europe/London", now) == "14:05 (UTC+0)"
    assert local_time("America/New_York", datetime(2026, 7, 1, 14, 5, tzinfo=UTC)) == "10:05 (UTC-4)"
    assert local_time("Mars/Olympus_Mons", now) is None
    assert local_time(None, now) is None


def test_the_panel_shows_local_time_attributes_as_text_and_the_visitors_other_conversations(stack: Stack) -> None:
    tenant = stack.bootstrap("pat")
    started = session_request(
        stack,
        tenant,
        timezone="Asia/Shanghai",
        attributes={"plan": "<b>pro</b>", "order": "A-17"},
    ).json()
    visitor_id = started["visitor_id"]
    older = say(tenant, visitor_id, "My first question")
    resolve(older)
    current = say(tenant, visitor_id, "Another question")
    agent = logged_in_agent(stack.base_url, tenant)

    shown = panel(agent.conversation_page(str(current)))

    assert re.search(r'<dd class="local-time">\d\d:\d\d \(UTC\+8\)</dd>', shown), shown
    assert "<dt>order</dt><dd>A-17</dd>" in shown
    assert "<dt>plan</dt><dd>&lt;b&gt;pro&lt;/b&gt;</dd>" in shown
    earlier = re.findall(r'<ul class="earlier-conversations">(.*?)</ul>', shown, re.S)
    assert len(earlier) == 1
    assert re.findall(r'href="([^"]+)"', earlier[0]) == [f"/console/c/{older}"]
    assert "resolved" in earlier[0] and "My first question" in earlier[0]

    # From the older conversation, the newer one is the other.
    shown = panel(agent.conversation_page(str(older)))
    links = re.findall(r'href="([^"]+)"', re.search(r'<ul class="earlier-conversations">(.*?)</ul>', shown, re.S)[1])
    assert links == [f"/console/c/{current}"]
