"""Saved replies (desk/actions/canned.py, web/agent/canned.py): an agent's own and the tenant's shared ones, who may
change which, unique shortcuts, and the order the composer's `/shortcut` list offers them in."""

from __future__ import annotations

import re
import secrets
import uuid

import pytest
from sqlalchemy import select

from desk.actions import canned as act
from desk.actions.conversations import Conflict, Forbidden, Invalid, NotFound
from desk.actions.tenants import do_create_user
from desk.db import tenant_session
from desk.models import CannedResponse, User
from desk.queries import canned as q
from tests.clients import Agent, logged_in_agent
from tests.conftest import Stack


def user(tenant: uuid.UUID, role: str = "agent") -> uuid.UUID:
    with tenant_session(tenant) as session:
        if role == "owner":  # the bootstrap made one
            return session.scalar(select(User.id).where(User.role == "owner"))
        email = f"{role}-{secrets.token_hex(4)}@example.test"
        return do_create_user(session, email=email, name=role.title(), role=role, password="x" * 12).id


def create(tenant: uuid.UUID, actor: uuid.UUID, shortcut: str, body: str, shared: bool = False) -> uuid.UUID:
    with tenant_session(tenant) as session:
        return act.do_create_canned(session, actor, shortcut, body, shared=shared).id


def update(tenant: uuid.UUID, actor: uuid.UUID, canned: uuid.UUID, shortcut: str, body: str) -> None:
    with tenant_session(tenant) as session:
        act.do_update_canned(session, actor, canned, shortcut, body)


def delete(tenant: uuid.UUID, actor: uuid.UUID, canned: uuid.UUID) -> None:
    with tenant_session(tenant) as session:
        act.do_delete_canned(session, actor, canned)


def search(tenant: uuid.UUID, agent: uuid.UUID, query: str) -> list[str]:
    with tenant_session(tenant) as session:
        return [c.shortcut for c in session.scalars(q.search(agent, query))]


def shortcuts(tenant: uuid.UUID) -> list[str]:
    with tenant_session(tenant) as session:
        return sorted(session.scalars(select(CannedResponse.shortcut)))


# -- rights ---------------------------------------------------------------------------------------------------------


def test_an_agent_keeps_their_own_saved_replies(tenant: uuid.UUID) -> None:
    agent = user(tenant)
    canned = create(tenant, agent, "/Thanks", "Thanks for waiting!")
    update(tenant, agent, canned, "thanks", "Thank you for waiting!")
    assert search(tenant, agent, "thanks") == ["thanks"]
    delete(tenant, agent, canned)
    assert shortcuts(tenant) == []


def test_an_agent_cannot_add_or_change_shared_replies_but_an_admin_or_owner_can(tenant: uuid.UUID) -> None:
    agent, admin, owner = user(tenant), user(tenant, "admin"), user(tenant, "owner")
    with pytest.raises(Forbidden, match="Only admins and owners"):
        create(tenant, agent, "hours", "We are open 9 to 5.", shared=True)

    shared = create(tenant, admin, "hours", "We are open 9 to 5.", shared=True)
    with pytest.raises(Forbidden, match="Only admins and owners"):
        update(tenant, agent, shared, "hours", "Always open!")
    with pytest.raises(Forbidden):
        delete(tenant, agent, shared)
    update(tenant, owner, shared, "hours", "We are open 9 to 6.")

    assert search(tenant, agent, "hours") == ["hours"]  # agents use them all the same
    delete(tenant, admin, shared)
    assert shortcuts(tenant) == []


def test_nobody_sees_or_changes_another_agents_own_replies(tenant: uuid.UUID) -> None:
    ann, bob, admin = user(tenant), user(tenant), user(tenant, "admin")
    mine = create(tenant, ann, "sig", "— Ann")
    assert search(tenant, bob, "sig") == []
    for other in (bob, admin):
        with pytest.raises(NotFound):
            update(tenant, other, mine, "sig", "— someone else")
        with pytest.raises(NotFound):
            delete(tenant, other, mine)


# -- uniqueness and bounds ------------------------------------------------------------------------------------------


def test_a_shortcut_is_unique_among_shared_replies_and_among_each_agents_own(tenant: uuid.UUID) -> None:
    ann, bob, admin = user(tenant), user(tenant), user(tenant, "admin")
    create(tenant, admin, "hello", "Hello! How can I help?", shared=True)
    with pytest.raises(Conflict, match="/hello is already a shared saved reply's shortcut"):
        create(tenant, admin, "Hello", "Hi!", shared=True)

    create(tenant, ann, "hello", "Hi, Ann here.")  # an agent's own may shadow a shared one
    create(tenant, bob, "hello", "Hi, Bob here.")  # and two agents may use the same one
    with pytest.raises(Conflict, match="another of your saved replies"):
        create(tenant, ann, "hello", "Hey")
    other = create(tenant, ann, "hey", "Hey")
    with pytest.raises(Conflict):
        update(tenant, ann, other, "hello", "Hey")
    assert shortcuts(tenant) == ["hello", "hello", "hello", "hey"]


@pytest.mark.parametrize(
    ("shortcut", "body", "reason"),
    [
        ("", "x", "1 to 32"),
        ("two words", "x", "1 to 32"),
        ("x" * 33, "x", "1 to 32"),
        ("ok", "   ", "needs some text"),
        ("ok", "x" * 4001, "at most 4000 characters"),
    ],
)
def test_a_saved_reply_out_of_bounds_is_refused(tenant: uuid.UUID, shortcut: str, body: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        create(tenant, user(tenant), shortcut, body)


# -- search ---------------------------------------------------------------------------------------------------------


def test_search_offers_own_replies_first_then_shared_each_by_shortcut_prefix_then_words_of_the_text(
    tenant: uuid.UUID,
) -> None:
    agent, admin, other = user(tenant), user(tenant, "admin"), user(tenant)
    create(tenant, admin, "refer", "Let me refer you to our sales team.", shared=True)
    create(tenant, admin, "policy", "Refunds take 5 days.", shared=True)
    create(tenant, admin, "style", "We prefer email.", shared=True)  # "ref" is inside a word, not at its start
    create(tenant, agent, "returns", "Your refund is on its way.")
    create(tenant, agent, "refund", "We refund within 14 days.")
    create(tenant, other, "refx", "Someone else's")

    assert search(tenant, agent, "ref") == ["refund", "returns", "refer", "policy"]
    assert search(tenant, agent, "/REF") == ["refund", "returns", "refer", "policy"]
    assert search(tenant, agent, "refund days") == ["refund", "policy"]
    assert search(tenant, agent, "") == ["refund", "returns", "policy", "refer", "style"]
    assert search(tenant, agent, "100%_.*") == []  # taken literally, never as a pattern


# -- over HTTP ------------------------------------------------------------------------------------------------------


def test_over_http_the_composer_search_answers_with_own_replies_first(stack: Stack) -> None:
    tenant = stack.bootstrap("gail")
    owner, agent = Agent(stack.base_url), logged_in_agent(stack.base_url, tenant)
    assert owner.login(tenant["owner_email"], tenant["owner_password"]).status_code == 200

    page = owner.client.get("/console/canned").text
    assert 'value="shared"' in page  # the owner may add shared ones
    shared = owner.client.post(
        "/console/canned",
        data={
            "shortcut": "thanks",
            "body": "Thanks from all of us!",
            "scope": "shared",
            "csrf_token": Agent.csrf(page),
        },
    )
    assert shared.status_code == 200 and "Saved /thanks." in shared.text
    page = agent.client.get("/console/canned").text
    assert 'value="shared"' not in page and "Admins and owners manage these." in page
    agent.client.post(
        "/console/canned",
        data={"shortcut": "thanks", "body": "Thanks, talk soon! — Gail", "csrf_token": Agent.csrf(page)},
    )

    found = agent.client.get("/console/canned/search", params={"q": "tha"}).json()["results"]
    assert [(r["shortcut"], r["shared"]) for r in found] == [("thanks", False), ("thanks", True)]


def test_over_http_an_agent_changing_a_shared_reply_is_refused_with_the_reason(stack: Stack) -> None:
    tenant = stack.bootstrap("hal")
    owner, agent = Agent(stack.base_url), logged_in_agent(stack.base_url, tenant)
    owner.login(tenant["owner_email"], tenant["owner_password"])
    page = owner.client.get("/console/canned").text
    owner.client.post(
        "/console/canned",
        data={"shortcut": "bye", "body": "Goodbye!", "scope": "shared", "csrf_token": Agent.csrf(page)},
    )
    page = agent.client.get("/console/canned").text
    assert "Goodbye!" in page and "canned-edit" not in page  # shown read-only
    canned_id = agent.client.get("/console/canned/search", params={"q": "bye"}).json()["results"][0]["id"]

    refused = agent.client.post(
        f"/console/canned/{canned_id}", data={"shortcut": "bye", "body": "Later!", "csrf_token": Agent.csrf(page)}
    )

    assert refused.status_code == 403
    assert "Only admins and owners change shared saved replies." in refused.text
    assert re.search(r"Goodbye!", agent.client.get("/console/canned").text)
