"""The widget's settings, availability and "leave a message" (issue 4) in the session response, on the real
processes: settings set by `deskbell bootstrap`, agents' presence set in the console, and the email a visitor
leaves when no agent is online."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from desk.cli import main
from desk.db import system_session
from desk.models import Site, Visitor
from desk.visitor_context import identity_hash
from desk.widget_settings import DEFAULTS
from tests.clients import Visitor as VisitorClient
from tests.clients import logged_in_agent
from tests.conftest import Stack


def post_session(stack: Stack, site_key: str, **fields: Any) -> httpx.Response:
    body = {"site_key": site_key, "page": {"url": "https://shop.test/", "title": "Shop"}, **fields}
    return httpx.post(f"{stack.base_url}/api/v1/widget/session", json=body, timeout=10)


def stored_email(visitor_id: str) -> str | None:
    with system_session() as session:
        return session.scalar(select(Visitor.email).where(Visitor.id == uuid.UUID(visitor_id)))


def test_settings_from_bootstrap_reach_the_session_response(stack: Stack) -> None:
    options = ("--welcome", "en=Hello from the shop", "--welcome", "zh=欢迎光临", "--color", "#AA3300")
    tenant = stack.bootstrap(options=(*options, "--position", "left"))

    widget = post_session(stack, tenant["site_key"]).json()["widget"]

    assert widget == {
        "welcome": {"en": "Hello from the shop", "zh": "欢迎光临"},
        "color": "#aa3300",
        "position": "left",
    }


def test_a_site_without_settings_gets_the_defaults(stack: Stack) -> None:
    tenant = stack.bootstrap()

    assert post_session(stack, tenant["site_key"]).json()["widget"] == DEFAULTS


@pytest.mark.parametrize(
    "option",
    [
        ("--color", "red"),
        ("--color", "#12345"),
        ("--position", "top"),
        ("--welcome", "fr=Bonjour"),
        ("--welcome", "en"),
    ],
)
def test_bootstrap_refuses_malformed_settings(option: tuple[str, str]) -> None:
    result = CliRunner().invoke(main, ["bootstrap", "--slug", "never-made", *option])

    assert result.exit_code == 2, result.output


def test_agents_online_follows_the_agents_presence(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    other = stack.bootstrap("bob")
    assert post_session(stack, tenant["site_key"]).json()["agents_online"] is False  # nobody has logged in
    agent = logged_in_agent(stack.base_url, tenant)  # logging in sets the presence to online

    assert agent.set_presence("away").status_code == 200
    assert post_session(stack, tenant["site_key"]).json()["agents_online"] is False

    assert agent.set_presence("online").status_code == 200
    assert post_session(stack, tenant["site_key"]).json()["agents_online"] is True
    assert post_session(stack, other["site_key"]).json()["agents_online"] is False  # another tenant's agent


def test_an_email_left_by_an_anonymous_visitor_is_stored_and_shown_to_agents(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    first = post_session(stack, tenant["site_key"]).json()

    async def leave_message() -> str:
        visitor = VisitorClient(stack.base_url, tenant["site_key"], token=first["visitor_token"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "left-1", "body": "Please call me back"})
        ack = await visitor.expect("ack")
        await visitor.close()
        return ack["conversation_id"]

    conversation_id = asyncio.run(leave_message())
    again = post_session(stack, tenant["site_key"], visitor_token=first["visitor_token"], email=" ada@example.com ")

    assert again.status_code == 200 and again.json()["visitor_id"] == first["visitor_id"]
    assert stored_email(first["visitor_id"]) == "ada@example.com"
    page = logged_in_agent(stack.base_url, tenant).conversation_page(conversation_id)
    assert "ada@example.com" in page and "(given by the visitor)" in page


@pytest.mark.parametrize("email", ["not-an-email", "a b@example.com", "a" * 310 + "@example.com", 42, "x@y.z\x00"])
def test_a_malformed_email_is_refused(stack: Stack, email: object) -> None:
    tenant = stack.bootstrap()

    response = post_session(stack, tenant["site_key"], email=email)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_email"


def test_an_identified_visitor_keeps_the_proved_email(stack: Stack) -> None:
    tenant = stack.bootstrap()
    with system_session() as session:
        secret = session.scalar(select(Site.identity_secret).where(Site.site_key == tenant["site_key"]))
    identity = {"external_id": "u-7", "email": "ada@shop.test", "hash": identity_hash(secret, "u-7")}
    first = post_session(stack, tenant["site_key"], identity=identity).json()

    post_session(stack, tenant["site_key"], visitor_token=first["visitor_token"], email="someone@else.test")

    assert stored_email(first["visitor_id"]) == "ada@shop.test"
