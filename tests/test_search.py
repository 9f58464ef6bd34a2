"""Search in the console (docs/architecture.md, "The console: search and the visitor panel"): an agent types words
and finds the tenant's messages and visitors, each linking to its conversation. Messages are stored by the store
worker's own action; visitors come from the widget's session request; the search runs in the real web process."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from desk.actions.messages import Inbound, do_store_messages
from desk.db import system_session, tenant_session
from desk.models import Site
from desk.queries import search as s
from desk.visitor_context import identity_hash
from tests.clients import Agent, logged_in_agent
from tests.conftest import Stack
from tests.factories import tenant_id_of


def new_visitor(stack: Stack, tenant: dict[str, Any], **identity: str) -> uuid.UUID:
    """A visitor as the widget makes one; with `identity`, identified by the site's hash."""
    body: dict[str, Any] = {"site_key": tenant["site_key"], "page": {"url": "https://shop.test/", "title": "Shop"}}
    if identity:
        with system_session() as session:
            secret = session.scalar(select(Site.identity_secret).where(Site.site_key == tenant["site_key"]))
        body["identity"] = {**identity, "hash": identity_hash(secret, identity["external_id"])}
    response = httpx.post(f"{stack.base_url}/api/v1/widget/session", json=body, timeout=10)
    response.raise_for_status()
    return uuid.UUID(response.json()["visitor_id"])


def say(tenant: dict[str, Any], visitor_id: uuid.UUID, *bodies: str) -> list[tuple[uuid.UUID, int]]:
    """The visitor's messages, stored as the store worker stores them: (conversation_id, message id) each."""
    with tenant_session(tenant_id_of(tenant)) as session:
        stored = do_store_messages(session, [Inbound(visitor_id, uuid.uuid4().hex, body) for body in bodies])
        session.commit()
    return [(row.message.conversation_id, row.message.id) for row in stored if row is not None]


def search(agent: Agent, q: str, dropdown: bool = False) -> httpx.Response:
    headers = {"HX-Request": "true"} if dropdown else {}
    return agent.client.get("/console/search", params={"q": q}, headers=headers)


def hits(page: str) -> list[str]:
    """The result links, in order."""
    return re.findall(r'<li class="hit [a-z]+-hit">\s*<a href="([^"]+)"', page)


def test_a_word_in_a_message_finds_it_with_a_link_to_that_message(stack: Stack) -> None:
    tenant = stack.bootstrap("sam")
    visitor = new_visitor(stack, tenant)
    [(conversation_id, message_id), _] = say(tenant, visitor, "Where is my refund for order 7781?", "Thanks, bye")
    agent = logged_in_agent(stack.base_url, tenant)

    page = search(agent, "refund")

    assert page.status_code == 200
    assert hits(page.text) == [f"/console/c/{conversation_id}#msg-{message_id}"]
    assert "Where is my <mark>refund</mark> for order 7781?" in page.text
    assert search(agent, "bye").text.count('class="hit message-hit"') == 1
    assert "Nothing found for “invoice”." in search(agent, "invoice").text


def test_the_last_word_is_a_prefix_and_every_word_must_match(stack: Stack) -> None:
    tenant = stack.bootstrap("sid")
    visitor = new_visitor(stack, tenant)
    [(conversation_id, refund), (_, order)] = say(tenant, visitor, "I want a refund", "My order never came")
    agent = logged_in_agent(stack.base_url, tenant)

    assert hits(search(agent, "refu").text) == [f"/console/c/{conversation_id}#msg-{refund}"]
    assert "<mark>refund</mark>" in search(agent, "refu").text
    assert hits(search(agent, "order ne").text) == [f"/console/c/{conversation_id}#msg-{order}"]
    assert hits(search(agent, "refund nev").text) == []
    assert hits(search(agent, "refund or never").text) == [
        f"/console/c/{conversation_id}#msg-{order}",
        f"/console/c/{conversation_id}#msg-{refund}",
    ]  # newest first
    assert hits(search(agent, '"order never came"').text) == [f"/console/c/{conversation_id}#msg-{order}"]
    assert hits(search(agent, "order -never").text) == []


def test_visitors_are_found_by_name_email_or_user_id_and_link_to_their_latest_conversation(stack: Stack) -> None:
    tenant = stack.bootstrap("sue")
    grace = new_visitor(stack, tenant, external_id="u-1906", name="Grace Hopper", email="grace@navy.example")
    [(first, _)] = say(tenant, grace, "Hello")
    with tenant_session(tenant_id_of(tenant)) as session:  # resolved: her next message starts a new conversation
        from desk.models import Conversation

        session.get(Conversation, first).status = "resolved"
        session.commit()
    [(latest, _)] = say(tenant, grace, "Me again")
    new_visitor(stack, tenant, external_id="u-2", name="Alan Turing", email="alan@bletchley.example")
    agent = logged_in_agent(stack.base_url, tenant)

    for q in ("Hopper", "grace hop", "grace@navy.example", "grace@na", "u-1906"):
        page = search(agent, q).text
        assert hits(page) == [f"/console/c/{latest}"], q
    assert "<mark>Grace</mark> <mark>Hopper</mark>" in search(agent, "grace hopper").text
    alan = search(agent, "turing").text
    assert "no conversation" in alan and hits(alan) == []


def test_another_tenants_messages_and_visitors_are_never_found(stack: Stack) -> None:
    ours, theirs = stack.bootstrap("sly"), stack.bootstrap("sol")
    their_visitor = new_visitor(stack, theirs, external_id="y", name="Zelda Secret", email="zelda@secret.example")
    say(theirs, their_visitor, "secret refund plan", "秘密退款计划")
    say(ours, new_visitor(stack, ours), "nothing to see")
    agent = logged_in_agent(stack.base_url, ours)

    for q in ("secret", "secre", "refund plan", "zelda@secret.example", "Zelda", "退款"):
        page = search(agent, q)
        assert page.status_code == 200
        assert hits(page.text) == [] and "Nothing found" in page.text, q
    # The query layer itself, in our tenant's session, finds nothing of theirs either.
    with tenant_session(tenant_id_of(ours)) as session:
        for q in ("secret", "退款"):
            found = s.search(session, s.parse(q))
            assert found.messages == [] and found.visitors == []
    with tenant_session(tenant_id_of(theirs)) as session:
        assert len(s.search(session, s.parse("secret")).messages) == 1


def test_empty_or_too_long_searches_are_refused_with_a_message(stack: Stack) -> None:
    tenant = stack.bootstrap("sal")
    agent = logged_in_agent(stack.base_url, tenant)

    for q, message in (("", "Type a word to search for."), ("   ", "Type a word to search for.")):
        for dropdown in (False, True):
            response = search(agent, q, dropdown)
            assert response.status_code == 400
            assert message in response.text
    too_long = search(agent, "a" * 201)
    assert too_long.status_code == 400
    assert "Search for at most 200 characters." in too_long.text
    assert search(agent, "a" * 200).status_code == 200
    assert agent.client.get("/console/search").status_code == 400
    assert search(agent, "!!! ((( ''' &&").status_code == 200  # no words in it: nothing found, not an error


def test_html_in_a_message_is_shown_as_text_with_only_the_hit_marked(stack: Stack) -> None:
    tenant = stack.bootstrap("sky")
    body = '<img src=x onerror=alert(1)> <b>refund</b> & "now" </mark><script>alert(2)</script>'
    [(conversation_id, message_id)] = say(tenant, new_visitor(stack, tenant), body)
    agent = logged_in_agent(stack.base_url, tenant)

    for dropdown in (False, True):
        page = search(agent, "refund", dropdown).text
        results = page[page.index('<div class="search-results">') :]
        snippet = re.search(r'<span class="snippet">(.*?)</span>\s*</a>', results, re.S).group(1)
        assert snippet == (
            "&lt;img src=x onerror=alert(1)&gt; &lt;b&gt;<mark>refund</mark>&lt;/b&gt; &amp; &#34;now&#34; "
            "&lt;/mark&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
        )
        assert re.findall(r"<(\w+)", snippet) == ["mark"]
        assert f"#msg-{message_id}" in results and str(conversation_id) in results


def test_a_chinese_word_finds_a_message_written_without_spaces(stack: Stack) -> None:
    tenant = stack.bootstrap("sun")
    visitor = new_visitor(stack, tenant, external_id="c-1", name="王小明")
    [(conversation_id, message_id), _] = say(tenant, visitor, "你好，我想退款，订单还没到", "谢谢")
    agent = logged_in_agent(stack.base_url, tenant)

    page = search(agent, "退款").text
    assert hits(page) == [f"/console/c/{conversation_id}#msg-{message_id}"]
    assert "你好，我想<mark>退款</mark>，订单还没到" in page
    assert hits(search(agent, "退款 订单").text) == [f"/console/c/{conversation_id}#msg-{message_id}"]
    assert hits(search(agent, "退款 发票").text) == []
    assert hits(search(agent, "小明").text) == [f"/console/c/{conversation_id}"]


def test_the_search_box_asks_for_results_as_the_agent_types_and_enter_opens_the_results_page(stack: Stack) -> None:
    tenant = stack.bootstrap("sia")
    agent = logged_in_agent(stack.base_url, tenant)

    page = search(agent, "anything").text
    box = page[page.index('<form class="search-box"') :]
    box = box[: box.index("</form>")]
    assert 'id="search"' in box and 'name="q"' in box and 'value="anything"' in box
    assert 'hx-get="/console/search"' in box and 'hx-trigger="input changed delay:300ms, search"' in box
    assert 'action="/console/search"' in box and 'method="get"' in box
    assert "<html" not in search(agent, "anything", dropdown=True).text  # the dropdown gets the results only


def test_a_word_only_in_old_messages_is_found_behind_many_newer_ones(
    tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search reads the newest messages first and widens its window until it has LIMIT hits or read them all
    (desk/queries/search.py, _newest_matches); here with windows of a few messages instead of thousands."""
    from tests.factories import new_visitor as new_visitor_row

    monkeypatch.setattr(s, "RECENT_SCAN", 3)
    monkeypatch.setattr(s, "FIRST_WINDOW", 5)
    monkeypatch.setattr(s, "WINDOW_GROWTH", 2)
    monkeypatch.setattr(s, "LIMIT", 4)
    visitor = new_visitor_row(tenant)
    bodies = ["an old invoice"] + [f"common word {i}" for i in range(40)] + ["a newer invoice"]
    with tenant_session(tenant) as session:
        stored = do_store_messages(session, [Inbound(visitor, uuid.uuid4().hex, body) for body in bodies])
        session.commit()
    ids = {row.message.body: row.message.id for row in stored if row is not None}

    with tenant_session(tenant) as session:
        invoices = s.search(session, s.parse("invoice"))
        common = s.search(session, s.parse("common"))

    assert [hit.id for hit in invoices.messages] == [ids["a newer invoice"], ids["an old invoice"]]
    assert [hit.id for hit in common.messages] == [ids[f"common word {i}"] for i in (39, 38, 37, 36)]
