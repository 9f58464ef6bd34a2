"""Visitor context for the agents (issue 4): campaign, browser, locale, country and the trail of pages, from the
session request the widget makes on every page. On the real processes, except the offline GeoIP lookups."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from desk.db import system_session
from desk.models import Visitor as VisitorRow
from desk.visitor_context import TRAIL_LENGTH, location
from tests.clients import Agent, Visitor, logged_in_agent
from tests.conftest import Stack

CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"
)


def post_session(stack: Stack, body: dict[str, Any], user_agent: str = CHROME_ANDROID) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/api/v1/widget/session", json=body, headers={"User-Agent": user_agent}, timeout=10
    )


def start_conversation(stack: Stack, site_key: str) -> tuple[str, str]:
    """A new visitor says hello: returns its token and the conversation."""

    async def scenario() -> tuple[str, str]:
        visitor = Visitor(stack.base_url, site_key)
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": uuid.uuid4().hex, "body": "Hello"})
        ack = await visitor.expect("ack")
        await visitor.close()
        return visitor.token, ack["conversation_id"]

    return asyncio.run(scenario())


def agent_for(stack: Stack, tenant: dict[str, Any]) -> Agent:
    return logged_in_agent(stack.base_url, tenant)


def stored(visitor_id: str) -> VisitorRow:
    with system_session() as session:
        return session.scalar(select(VisitorRow).where(VisitorRow.id == uuid.UUID(visitor_id)))


def test_the_agent_sees_campaign_browser_and_locale_of_the_page_the_visitor_is_on(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    token, conversation_id = start_conversation(stack, tenant["site_key"])

    response = post_session(
        stack,
        {
            "site_key": tenant["site_key"],
            "visitor_token": token,
            "page": {
                "url": "https://shop.test/sale?utm_source=newsletter&utm_medium=email&utm_campaign=spring&x=1",
                "title": "Spring sale",
                "referrer": "https://mail.example/",
            },
            "language": "zh-CN",
            "timezone": "Asia/Shanghai",
            "screen": "390x844",
        },
    )

    assert response.status_code == 200
    page = agent_for(stack, tenant).conversation_page(conversation_id)
    assert "newsletter · email · spring" in page
    assert "Chrome Mobile 124 · Android 10 · mobile" in page
    assert "zh-CN · Asia/Shanghai · 390x844" in page
    assert "https://mail.example/" in page
    assert "Spring sale" in page
    assert '<dd class="location">unknown</dd>' in page  # a loopback address has no country


def test_a_later_page_without_utm_keeps_the_campaign_that_brought_the_visitor(stack: Stack) -> None:
    tenant = stack.bootstrap()
    landing = {"url": "https://shop.test/?utm_source=ads&utm_term=red+shoes", "title": "Shop"}
    first = post_session(stack, {"site_key": tenant["site_key"], "page": landing}).json()

    post_session(
        stack,
        {
            "site_key": tenant["site_key"],
            "visitor_token": first["visitor_token"],
            "page": {"url": "https://shop.test/c"},
        },
    )

    visitor = stored(first["visitor_id"])
    assert visitor.context["utm"] == {"utm_source": "ads", "utm_term": "red shoes"}
    assert visitor.page == {"url": "https://shop.test/c"}


def test_the_trail_keeps_the_last_fifty_pages_in_order(stack: Stack) -> None:
    tenant = stack.bootstrap()
    token = None
    for i in range(TRAIL_LENGTH + 5):
        page = {"url": f"https://shop.test/p/{i}", "title": f"Product {i}"}
        data = post_session(stack, {"site_key": tenant["site_key"], "visitor_token": token, "page": page}).json()
        token = data["visitor_token"]

    trail = stored(data["visitor_id"]).trail
    assert len(trail) == TRAIL_LENGTH == 50
    assert [step["url"] for step in trail] == [f"https://shop.test/p/{i}" for i in range(5, 55)]
    assert trail[-1]["title"] == "Product 54" and trail[-1]["at"].endswith("+00:00")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"identity": "user-1"}, "invalid_identity"),
        ({"identity": {"external_id": 42, "hash": "ab"}}, "invalid_identity"),
        ({"identity": {"external_id": "u", "hash": None}}, "invalid_identity"),
        ({"identity": {"external_id": "u", "hash": "ab", "email": ["a@b.c"]}}, "invalid_identity"),
        ({"identity": {"external_id": "u" * 201, "hash": "ab"}}, "invalid_identity"),
        ({"identity": {"external_id": "u", "hash": "ab", "name": "n" * 201}}, "invalid_identity"),
        ({"identity": {"external_id": "u", "hash": "ab", "email": "e" * 321}}, "invalid_identity"),
        ({"language": 5}, "invalid_context"),
        ({"timezone": {"tz": "UTC"}}, "invalid_context"),
        ({"screen": [390, 844]}, "invalid_context"),
    ],
)
def test_wrongly_typed_fields_are_refused_with_a_json_error(stack: Stack, fields: dict[str, Any], code: str) -> None:
    tenant = stack.bootstrap()

    response = post_session(stack, {"site_key": tenant["site_key"], **fields})

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == code


def test_nul_and_malformed_values_are_left_out_not_a_server_error(stack: Stack) -> None:
    tenant = stack.bootstrap()
    body = {
        "site_key": tenant["site_key"],
        "page": {"url": "https://shop.test/?utm_source=a%00b&utm_medium=cpc", "title": "Nul\x00title"},
        "language": "en\x00",
        "timezone": "Europe/Paris\x00",
        "screen": "huge",
    }

    response = post_session(stack, body, user_agent="Mozilla/5.0")

    assert response.status_code == 200
    visitor = stored(response.json()["visitor_id"])
    assert visitor.page == {"url": "https://shop.test/?utm_source=a%00b&utm_medium=cpc"}
    assert visitor.context["utm"] == {"utm_medium": "cpc"}
    assert not {"language", "timezone", "screen"} & visitor.context.keys()
    nul_identity = post_session(stack, {**body, "identity": {"external_id": "u\x00", "hash": "ab"}})
    assert nul_identity.status_code == 400
    assert nul_identity.json()["error"] == "invalid_identity"


def test_country_comes_from_the_bundled_offline_database() -> None:
    assert location("8.8.8.8")["country"] == "US"
    assert location("2001:4860:4860::8888")["country"] == "US"
    assert location("81.2.69.160")["country_name"] == "United Kingdom"
    assert location("127.0.0.1") == {"country": None, "country_name": None, "city": None}
    assert location("not an address")["country"] is None
