"""The inbox: lists Mine / Unassigned / All by status, newest activity first, paged by cursor, with tab counts,
unread counts and waiting times; over the real store action, and over HTTP against the running product."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from desk.actions.conversations import do_assign, do_resolve, do_set_pending
from desk.actions.messages import Inbound, do_store_messages
from desk.db import system_session, tenant_session
from desk.models import Conversation, Tenant
from desk.queries import inbox
from tests.clients import Agent, Visitor, eventually
from tests.conftest import Stack
from tests.factories import new_agent, new_visitor


def visitor_says(tenant_id: uuid.UUID, *bodies: str, visitor_id: uuid.UUID | None = None) -> uuid.UUID:
    """A visitor (a new one unless given) writes; stored by the store worker's action. Returns the conversation."""
    visitor_id = visitor_id or new_visitor(tenant_id)
    with tenant_session(tenant_id) as session:
        stored = do_store_messages(session, [Inbound(visitor_id, uuid.uuid4().hex, body) for body in bodies])
        session.commit()
        return stored[-1].message.conversation_id


def visitors_say_at_once(tenant_id: uuid.UUID, bodies: list[str]) -> None:
    """Many new visitors' first messages in one store batch: their conversations share one last_activity_at."""
    with tenant_session(tenant_id) as session:
        do_store_messages(session, [Inbound(new_visitor(tenant_id), "first", body) for body in bodies])
        session.commit()


def visitor_of(tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> uuid.UUID:
    with tenant_session(tenant_id) as session:
        return session.get(Conversation, conversation_id).visitor_id


def listed(tenant_id: uuid.UUID, me: uuid.UUID, **args: str) -> list[str]:
    """The previews of one list page, as the console shows its rows."""
    with tenant_session(tenant_id) as session:
        rows = session.execute(inbox.conversation_list(inbox.Filter.parse(args), me)).all()
    return [conversation.last_message_preview for conversation, _visitor, _assignee in rows]


def counts(tenant_id: uuid.UUID, me: uuid.UUID) -> dict[str, int]:
    with tenant_session(tenant_id) as session:
        return dict(session.execute(inbox.view_counts(me)).one()._mapping)


def test_each_view_lists_its_conversations_newest_activity_first(tenant: uuid.UUID) -> None:
    me, colleague = new_agent(tenant), new_agent(tenant)
    first = visitor_says(tenant, "first")
    second = visitor_says(tenant, "second")
    third = visitor_says(tenant, "third")
    with tenant_session(tenant) as session:
        do_assign(session, second, me, me)
        do_assign(session, third, colleague, colleague)
    visitor_says(tenant, "first, again", visitor_id=visitor_of(tenant, first))

    assert listed(tenant, me, view="mine") == ["second"]
    assert listed(tenant, me, view="unassigned") == ["first, again"]
    assert listed(tenant, me, view="all") == ["first, again", "third", "second"]
    assert listed(tenant, me) == listed(tenant, me, view="all", status="open"), "the default list"
    assert listed(tenant, colleague, view="mine") == ["third"]


def test_the_status_filter_lists_only_conversations_in_that_status(tenant: uuid.UUID) -> None:
    me = new_agent(tenant)
    done = visitor_says(tenant, "thanks, solved")
    waiting = visitor_says(tenant, "I will send the photo later")
    visitor_says(tenant, "still open")
    with tenant_session(tenant) as session:
        do_resolve(session, done, me)
        do_set_pending(session, waiting, me)

    assert listed(tenant, me) == ["still open"]
    assert listed(tenant, me, status="resolved") == ["thanks, solved"]
    assert listed(tenant, me, status="pending") == ["I will send the photo later"]
    assert listed(tenant, me, view="unassigned", status="snoozed") == []


def test_pages_follow_on_by_cursor_with_no_row_twice_or_missed_when_rows_share_a_time(tenant: uuid.UUID) -> None:
    me = new_agent(tenant)
    visitor_says(tenant, "oldest")
    visitors_say_at_once(tenant, [f"batch {n}" for n in range(5)])  # one store batch: one last_activity_at
    visitor_says(tenant, "newest")
    with tenant_session(tenant) as session:
        everything = [c.id for c, _v, _u in session.execute(inbox.conversation_list(inbox.Filter(), me, limit=100))]
        paged: list[uuid.UUID] = []
        where = inbox.Filter()
        while True:
            rows = session.execute(inbox.conversation_list(where, me, limit=2)).all()
            paged += [c.id for c, _v, _u in rows[:2]]
            if len(rows) <= 2:
                break
            last = rows[1][0]
            # The cursor goes through the URL and back, as the "More" link carries it.
            cursor = str(inbox.Cursor(last.last_activity_at, last.id))
            where = inbox.Filter.parse({"before": cursor})

    assert len(everything) == 7
    assert paged == everything


def test_a_list_filter_from_a_url_is_checked() -> None:
    assert inbox.Filter.parse({}) == inbox.Filter("all", "open", None)
    assert inbox.Filter("mine", "resolved").query() == {"view": "mine", "status": "resolved"}
    assert inbox.Filter().query() == {}, "the default list has a plain URL"
    for bad in ({"view": "theirs"}, {"status": "closed"}, {"before": "yesterday"}, {"before": "2026-01-01T00:00|x"}):
        with pytest.raises(inbox.BadFilter):
            inbox.Filter.parse(bad)


def test_tab_counts_count_open_conversations_per_view_and_stop_past_99(tenant: uuid.UUID) -> None:
    me = new_agent(tenant)
    mine = visitor_says(tenant, "mine", "still mine")
    closed = visitor_says(tenant, "resolved one")
    with tenant_session(tenant) as session:
        do_assign(session, mine, me, me)
        do_resolve(session, closed, me)
    assert counts(tenant, me) == {"mine": 1, "unassigned": 0, "all": 1, "unread": 2}

    visitors_say_at_once(tenant, [f"hello {n}" for n in range(120)])

    found = counts(tenant, me)
    assert found["mine"] == 1
    assert found["unassigned"] == found["all"] == inbox.COUNT_CAP + 1, "shown as 99+"
    assert found["unread"] == 2 + inbox.COUNT_CAP + 1, "mine, and the newest 100 unassigned ones"


# -- over HTTP, against the running product ------------------------------------------------------------------------


def rows_of(fragment: str) -> list[dict[str, Any]]:
    """The list's rows as an agent reads them: name, unread badge, preview, assignee, waiting time."""
    rows = []
    for item in re.findall(r'<li class="row[^"]*"(.*?)</li>', fragment, re.S):
        text = {
            key: (re.search(rf'class="{key}"[^>]*>(.*?)</span>', item, re.S) or [None, None])[1]
            for key in ("name", "unread", "preview", "assignee")
        }
        waiting = re.search(r"waiting\s*<span data-since=\"[^\"]+\">([^<]+)</span>", item)
        rows.append({**text, "waiting": waiting[1] if waiting else None})
    return rows


def inbox_fragment(agent: Agent, **args: str) -> str:
    response = agent.client.get("/console/conversations", params=args)
    assert response.status_code == 200, response.text
    return response.text


def log_in(stack: Stack, login: dict[str, str]) -> Agent:
    agent = Agent(stack.base_url)
    assert agent.login(login["email"], login["password"]).status_code == 200
    return agent


def test_mine_unassigned_and_all_over_http_with_routing_and_counts(stack: Stack) -> None:
    tenant = stack.bootstrap("ann", "bob")
    ann_login, bob_login = tenant["agents"]

    async def visitor_writes(body: str) -> str:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "c1", "body": body})
        conversation = (await visitor.expect("ack"))["conversation_id"]
        await visitor.close()
        return conversation

    def routed_and_answered(agent: Agent, body: str, answer: str) -> None:
        """The router gives the online agent the visitor's chat; the agent answers it before going offline (a
        routed chat nobody answered goes back to the queue when its agent leaves: docs/architecture.md)."""
        conversation = asyncio.run(visitor_writes(body))
        eventually(lambda: body in inbox_fragment(agent, view="mine"), f"{body!r} in Mine")
        assert agent.reply(conversation, answer).status_code == 200
        eventually(lambda: answer in inbox_fragment(agent, view="mine"), f"{answer!r} in Mine")
        agent.set_presence("offline")

    ann = log_in(stack, ann_login)  # logging in puts Ann online: the router gives her the next conversation
    routed_and_answered(ann, "For Ann", "Ann answers")
    bob = log_in(stack, bob_login)
    routed_and_answered(bob, "For Bob", "Bob answers")
    asyncio.run(visitor_writes("For nobody"))  # nobody online: it waits in the queue
    eventually(lambda: "For nobody" in inbox_fragment(ann, view="unassigned"), "the chat in Unassigned")

    mine = rows_of(inbox_fragment(ann, view="mine"))
    assert [(r["preview"], r["assignee"]) for r in mine] == [("Ann answers", "Ann")]
    assert [r["preview"] for r in rows_of(inbox_fragment(ann, view="unassigned"))] == ["For nobody"]
    assert [r["preview"] for r in rows_of(inbox_fragment(ann))] == ["For nobody", "Bob answers", "Ann answers"]
    assert rows_of(inbox_fragment(ann, status="resolved")) == []

    tabs = dict(re.findall(r'data-view="(\w+)".*?<span class="count"[^>]*>(\d+\+?)</span>', inbox_fragment(ann), re.S))
    assert tabs == {"mine": "1", "unassigned": "1", "all": "3"}
    page = ann.client.get("/console", params={"view": "unassigned"}).text
    assert 'aria-selected="true"' in page.split('data-view="unassigned"')[1].split(">")[0]
    assert ann.client.get("/console/conversations", params={"view": "theirs"}).status_code == 400


def test_a_row_shows_unread_messages_and_the_wait_until_the_agent_reads_and_answers(stack: Stack) -> None:
    tenant = stack.bootstrap("cleo")

    async def visitor_writes(*bodies: str) -> str:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        conversation = ""
        for n, body in enumerate(bodies):
            await visitor.send({"type": "message", "client_id": f"c{n}", "body": body})
            conversation = (await visitor.expect("ack"))["conversation_id"]
        await visitor.close()
        return conversation

    conversation = asyncio.run(visitor_writes("Hello?", "Anyone there?"))
    agent = log_in(stack, tenant["agents"][0])
    [row] = rows_of(inbox_fragment(agent))
    assert row["unread"] == "2"
    assert row["preview"] == "Anyone there?"
    assert row["waiting"] and re.fullmatch(r"\d+[smhd]", row["waiting"])
    assert 'data-unread="2"' in inbox_fragment(agent), "the page title's count"

    assert agent.mark_read(conversation, 2).status_code == 204
    [row] = rows_of(inbox_fragment(agent))
    assert row["unread"] is None
    assert 'data-unread="0"' in inbox_fragment(agent)

    assert agent.reply(conversation, "Yes, how can I help?").status_code == 200
    [row] = eventually(lambda: [r for r in rows_of(inbox_fragment(agent)) if r["waiting"] is None], "a row answered")
    assert row["preview"] == "Yes, how can I help?"


def test_more_conversations_continues_the_list_where_its_page_ended(stack: Stack) -> None:
    tenant = stack.bootstrap("dan")
    with system_session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == tenant["tenant"]))
    visitors_say_at_once(tenant_id, [f"chat {n:02}" for n in range(inbox.PAGE_SIZE + 5)])  # one shared time
    agent = log_in(stack, tenant["agents"][0])

    first = inbox_fragment(agent)
    more = re.search(r'<li class="more">\s*<a href="[^"]+"\s+hx-get="([^"]+)"', first)
    assert more, "a link to the next page"
    rest = agent.client.get(html.unescape(more[1]))
    assert rest.status_code == 200
    assert 'class="views"' not in rest.text, "just the next rows"
    assert '<li class="more">' not in rest.text, "the last page"
    seen = [r["preview"] for r in rows_of(first) + rows_of(rest.text)]
    assert sorted(seen) == [f"chat {n:02}" for n in range(inbox.PAGE_SIZE + 5)]
    assert len(rows_of(first)) == inbox.PAGE_SIZE
