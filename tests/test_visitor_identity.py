"""Identified visitors (issue 4): the site's server signs its user's id, and the widget passes it to the session
request. A correct hash names the visitor for the agents and follows them to any browser; a wrong one is refused
and the visitor stays anonymous. On the real processes."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import select

from desk.db import system_session
from desk.models import Site
from desk.visitor_context import identity_hash
from tests.clients import Agent, Visitor, logged_in_agent
from tests.conftest import Stack


def identity_secret(site_key: str) -> str:
    """What the site's owner copies from the admin panel to their own server."""
    with system_session() as session:
        return session.scalar(select(Site.identity_secret).where(Site.site_key == site_key))


def post_session(stack: Stack, site_key: str, **fields: Any) -> httpx.Response:
    body = {"site_key": site_key, "page": {"url": "https://shop.test/account", "title": "Account"}, **fields}
    return httpx.post(f"{stack.base_url}/api/v1/widget/session", json=body, timeout=10)


def say(stack: Stack, site_key: str, token: str, body: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The visitor with this token connects and says `body`: returns the welcome and the ack."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        visitor = Visitor(stack.base_url, site_key, token=token)
        welcome = await visitor.connect()
        await visitor.send({"type": "message", "client_id": uuid.uuid4().hex, "body": body})
        ack = await visitor.expect("ack")
        await visitor.close()
        return welcome, ack

    return asyncio.run(scenario())


def agent_for(stack: Stack, tenant: dict[str, Any]) -> Agent:
    return logged_in_agent(stack.base_url, tenant)


def test_a_correct_hash_identifies_the_visitor_to_the_agent(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    site_key = tenant["site_key"]
    secret = identity_secret(site_key)
    identity = {
        "external_id": "user-42",
        "name": "Ada <b>Lovelace</b>",
        "email": "ada@example.com",
        "hash": identity_hash(secret, "user-42"),
    }

    response = post_session(stack, site_key, identity=identity)

    assert response.status_code == 200
    assert response.json()["identified"] is True
    assert "identity_error" not in response.json()
    _, ack = say(stack, site_key, response.json()["visitor_token"], "Where is my order?")
    page = agent_for(stack, tenant).conversation_page(ack["conversation_id"])
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in page
    assert "<b>Lovelace</b>" not in page
    assert "ada@example.com" in page
    assert "✓ identified" in page


def test_a_wrong_hash_is_refused_and_the_visitor_stays_anonymous(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    site_key = tenant["site_key"]
    identity = {"external_id": "user-7", "name": "Mallory", "email": "mallory@example.com", "hash": "0" * 64}

    response = post_session(stack, site_key, identity=identity)

    assert response.status_code == 200
    assert response.json()["identified"] is False
    assert response.json()["identity_error"] == "hash does not match"
    _, ack = say(stack, site_key, response.json()["visitor_token"], "Hi")
    page = agent_for(stack, tenant).conversation_page(ack["conversation_id"])
    assert "Mallory" not in page and "mallory@example.com" not in page
    assert "anonymous" in page


def test_a_wrong_hash_cannot_take_over_an_identified_visitor(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    site_key = tenant["site_key"]
    real = {"external_id": "user-9", "hash": identity_hash(identity_secret(site_key), "user-9")}
    owner = post_session(stack, site_key, identity=real).json()

    forged = post_session(stack, site_key, identity={"external_id": "user-9", "hash": "f" * 64}).json()

    assert forged["identified"] is False
    assert forged["visitor_id"] != owner["visitor_id"]


def test_the_same_external_id_from_a_fresh_browser_resumes_the_same_visitor_and_thread(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    site_key = tenant["site_key"]
    identity = {"external_id": "user-77", "name": "Grace", "hash": identity_hash(identity_secret(site_key), "user-77")}
    laptop = post_session(stack, site_key, identity=identity).json()
    _, first_ack = say(stack, site_key, laptop["visitor_token"], "Asked on the laptop")

    phone = post_session(stack, site_key, identity=identity).json()  # no token: another browser

    assert phone["identified"] is True
    assert phone["visitor_id"] == laptop["visitor_id"]
    welcome, ack = say(stack, site_key, phone["visitor_token"], "Followed up on the phone")
    assert welcome["last_seq"] == 1
    assert ack["seq"] == 2
    assert ack["conversation_id"] == first_ack["conversation_id"]


def test_an_anonymous_visitor_who_logs_in_keeps_their_thread(stack: Stack) -> None:
    tenant = stack.bootstrap("alice")
    site_key = tenant["site_key"]
    anonymous = post_session(stack, site_key).json()
    _, first_ack = say(stack, site_key, anonymous["visitor_token"], "Before logging in")
    identity = {"external_id": "user-5", "hash": identity_hash(identity_secret(site_key), "user-5")}

    logged_in = post_session(stack, site_key, visitor_token=anonymous["visitor_token"], identity=identity).json()

    assert logged_in["identified"] is True
    assert logged_in["visitor_id"] == anonymous["visitor_id"]
    from_elsewhere = post_session(stack, site_key, identity=identity).json()
    assert from_elsewhere["visitor_id"] == anonymous["visitor_id"]
    _, ack = say(stack, site_key, from_elsewhere["visitor_token"], "After logging in")
    assert ack["conversation_id"] == first_ack["conversation_id"]


def test_an_external_id_is_its_own_visitor_on_each_site(stack: Stack) -> None:
    one, other = stack.bootstrap("alice"), stack.bootstrap("bob")

    def identified(site_key: str) -> dict[str, Any]:
        identity = {"external_id": "user-1", "hash": identity_hash(identity_secret(site_key), "user-1")}
        return post_session(stack, site_key, identity=identity).json()

    first, second = identified(one["site_key"]), identified(other["site_key"])

    assert first["identified"] and second["identified"]
    assert first["visitor_id"] != second["visitor_id"]


def test_first_sessions_of_one_user_in_several_browsers_at_once_make_one_visitor(stack: Stack) -> None:
    tenant = stack.bootstrap()
    site_key = tenant["site_key"]
    identity = {"external_id": "user-3", "hash": identity_hash(identity_secret(site_key), "user-3")}

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post_session(stack, site_key, identity=identity), range(6)))

    assert [r.status_code for r in responses] == [200] * 6
    assert len({r.json()["visitor_id"] for r in responses}) == 1
