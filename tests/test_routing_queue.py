"""Routing with the real workers (issue 8): capacity, the FIFO queue, places for visitors, unopened assignments.

The running stack's worker routes; visitors speak over real sockets and agents act over the console's HTTP. The
tenant's routing limits that the admin form does not offer yet are written to `tenants.settings` here.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from sqlalchemy import select

from desk import audit, bus, subjects
from desk.actions.agents import do_update_agent
from desk.db import tenant_session
from desk.models import Conversation, ConversationEvent, Tenant, User
from desk.queries.queue import queue_places
from tests.clients import Agent, Visitor, eventually
from tests.conftest import Stack
from tests.factories import new_agent, new_conversation, tenant_id_of


def set_routing(tenant_id: uuid.UUID, **values: Any) -> None:
    """The tenant's own routing limits (the admin form does not offer these keys yet)."""
    with tenant_session(tenant_id) as session:
        row = session.get(Tenant, tenant_id)
        assert row is not None
        row.settings = {**row.settings, "routing": {**row.settings.get("routing", {}), **values}}
        session.commit()


def set_capacity(tenant_id: uuid.UUID, who: str | uuid.UUID, max_chats: int) -> None:
    """What an admin does on the agents page: the owner sets the agent's (email or id) max concurrent chats."""
    with tenant_session(tenant_id) as session:
        owner = session.scalar(select(User).where(User.role == "owner"))
        agent = session.scalar(select(User).where(User.id == who if isinstance(who, uuid.UUID) else User.email == who))
        assert owner is not None and agent is not None
        do_update_agent(session, owner, audit.Client(), agent.id, {"max_chats": str(max_chats), "team_ids": []})


def log_in(stack: Stack, login: dict[str, str]) -> Agent:
    """An agent logs in to the console, which sets them online."""
    agent = Agent(stack.base_url)
    assert agent.login(login["email"], login["password"]).status_code == 200
    return agent


def resolve(agent: Agent, conversation_id: uuid.UUID) -> None:
    """The agent clicks Resolve in the conversation's action bar."""
    page = agent.conversation_page(str(conversation_id))
    response = agent.client.post(f"/console/c/{conversation_id}/resolve", data={"csrf_token": agent.csrf(page)})
    assert response.status_code == 200, response.text


def conversations(tenant_id: uuid.UUID) -> dict[uuid.UUID, Conversation]:
    with tenant_session(tenant_id) as session:
        return {c.id: c for c in session.scalars(select(Conversation))}


def waiting_order(tenant_id: uuid.UUID) -> list[uuid.UUID]:
    with tenant_session(tenant_id) as session:
        return [p.conversation_id for p in queue_places(session)]


def names(tenant_id: uuid.UUID) -> dict[uuid.UUID, str]:
    with tenant_session(tenant_id) as session:
        return dict(session.execute(select(User.id, User.email)).all())


class Visitors:
    """Visitors on real sockets, driven from the test's thread; all closed when the test ends."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.loop, self.open = stack, asyncio.new_event_loop(), []

    def write(self, site_key: str, count: int) -> list[tuple[Visitor, uuid.UUID]]:
        """`count` visitors write one after another (each waits for its ack): arrival order is their order."""
        return self.loop.run_until_complete(self._write(site_key, count))

    async def _write(self, site_key: str, count: int) -> list[tuple[Visitor, uuid.UUID]]:
        out = []
        for n in range(count):
            visitor = Visitor(self.stack.base_url, site_key)
            self.open.append(visitor)
            await visitor.connect()
            await visitor.send({"type": "message", "client_id": "first", "body": f"Visitor {n + 1} here"})
            ack = await visitor.expect("ack")
            out.append((visitor, uuid.UUID(ack["conversation_id"])))
        return out

    def close(self) -> None:
        for visitor in self.open:
            self.loop.run_until_complete(visitor.close())
        self.loop.close()


@pytest.fixture
def visitors(stack: Stack) -> Iterator[Visitors]:
    crowd = Visitors(stack)
    yield crowd
    crowd.close()


def test_three_agents_with_room_for_two_take_six_and_four_wait_in_order_until_chats_finish(
    stack: Stack, visitors: Visitors
) -> None:
    tenant = stack.bootstrap("ann", "bob", "cy")
    tid = tenant_id_of(tenant)
    set_routing(tid, strategy="round_robin", open_timeout_seconds=0)
    logins = tenant["agents"]
    for login in logins:
        set_capacity(tid, login["email"], 2)
    agents = [log_in(stack, login) for login in logins]  # ann, bob, cy come online in that order
    emails = [login["email"] for login in logins]

    people = visitors.write(tenant["site_key"], 10)
    ids = [c for _, c in people]

    # The first six go round robin, two each; the last four wait, in the order they came.
    eventually(lambda: waiting_order(tid) == ids[6:], "the last four queued in arrival order")
    state = conversations(tid)
    who = names(tid)
    assert [who.get(state[c].assignee_id) for c in ids[:6]] == emails + emails
    assert [state[c].assignee_id for c in ids[6:]] == [None] * 4

    # Each chat an agent finishes pulls the next one in line, to that agent.
    for n, (agent, email) in enumerate(zip(agents, emails, strict=True)):
        finished = ids[n]
        resolve(agent, finished)
        nxt = ids[6 + n]
        eventually(lambda nxt=nxt: conversations(tid)[nxt].assignee_id is not None, f"{nxt} assigned")
        assert who[conversations(tid)[nxt].assignee_id] == email
        assert waiting_order(tid) == ids[7 + n :]
    resolve(agents[0], ids[3])
    eventually(lambda: conversations(tid)[ids[9]].assignee_id is not None, "the last one assigned")
    assert waiting_order(tid) == []
    assert who[conversations(tid)[ids[9]].assignee_id] == emails[0]



def test_least_busy_gives_each_new_chat_to_the_agent_with_the_fewest_open(stack: Stack, visitors: Visitors) -> None:
    tenant = stack.bootstrap("dee", "eve")
    tid = tenant_id_of(tenant)
    set_routing(tid, strategy="least_busy", open_timeout_seconds=0)
    dee, eve = (log_in(stack, login) for login in tenant["agents"])
    first = visitors.write(tenant["site_key"], 2)
    eventually(lambda: all(conversations(tid)[c].assignee_id for _, c in first), "both assigned")
    state = conversations(tid)
    holders = {state[c].assignee_id for _, c in first}
    assert len(holders) == 2  # one each
    # Dee finishes hers: she now has the fewest open chats, so the next one is hers, not Eve's.
    dee_id = next(i for i, e in names(tid).items() if e == tenant["agents"][0]["email"])
    [dees] = [c for _, c in first if state[c].assignee_id == dee_id]
    resolve(dee, dees)
    [(_, third)] = visitors.write(tenant["site_key"], 1)
    eventually(lambda: conversations(tid)[third].assignee_id is not None, "the third assigned")
    assert conversations(tid)[third].assignee_id == dee_id
    del eve


def test_an_assignment_not_opened_in_time_moves_to_the_next_agent(stack: Stack, visitors: Visitors) -> None:
    tenant = stack.bootstrap("fay", "gus")
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=1)
    fay_login, gus_login = tenant["agents"]
    log_in(stack, fay_login)  # only Fay is online: the chat is hers
    [(_, conversation)] = visitors.write(tenant["site_key"], 1)
    who = lambda: names(tid).get(conversations(tid)[conversation].assignee_id)  # noqa: E731
    eventually(lambda: who() == fay_login["email"], "assigned to Fay")
    log_in(stack, gus_login)

    # Fay never opens it: after the timeout (and the sweep that notices) it is Gus's.
    eventually(lambda: who() == gus_login["email"], "moved to Gus")
    with tenant_session(tid) as session:
        kinds = [
            (e.kind, e.detail.get("reason"), e.detail.get("previous_name"))
            for e in session.scalars(
                select(ConversationEvent)
                .where(ConversationEvent.conversation_id == conversation)
                .order_by(ConversationEvent.id)
            )
        ]
    assert kinds == [
        ("assigned", None, None),
        ("unassigned", "not opened in time", "Fay"),
        ("assigned", None, None),
    ]


def test_a_chat_its_agent_opened_stays_with_them_while_an_unopened_one_moves_on(
    stack: Stack, visitors: Visitors
) -> None:
    tenant = stack.bootstrap("hal", "ivy")
    tid = tenant_id_of(tenant)
    hal_login, ivy_login = tenant["agents"]
    hal = log_in(stack, hal_login)  # only Hal is online: both chats are his
    (_, opened), (_, unopened) = visitors.write(tenant["site_key"], 2)
    who = lambda conversation: names(tid).get(conversations(tid)[conversation].assignee_id)  # noqa: E731
    eventually(lambda: who(opened) == who(unopened) == hal_login["email"], "both assigned to Hal")

    # Hal's console reads the first (console.js posts this when the pane is shown), not the second.
    page = hal.conversation_page(str(opened))
    read = hal.client.post(f"/console/c/{opened}/read", data={"seq": "1", "csrf_token": hal.csrf(page)})
    assert read.status_code == 204, read.text
    # Only now the timeout: a slow machine may take longer than it between the assignment and the read.
    set_routing(tid, open_timeout_seconds=1)
    log_in(stack, ivy_login)

    eventually(lambda: who(unopened) == ivy_login["email"], "the unopened chat moved to Ivy")
    assert who(opened) == hal_login["email"]


def test_an_agent_going_away_hands_unanswered_chats_back_and_keeps_answered_ones(
    stack: Stack, visitors: Visitors
) -> None:
    tenant = stack.bootstrap("hal", "ivy")
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=0)
    hal_login, ivy_login = tenant["agents"]
    hal = log_in(stack, hal_login)
    people = visitors.write(tenant["site_key"], 2)
    answered, unanswered = (c for _, c in people)
    eventually(lambda: all(conversations(tid)[c].assignee_id for c in (answered, unanswered)), "both Hal's")
    assert hal.reply(str(answered), "On it!").status_code == 200
    eventually(lambda: conversations(tid)[answered].waiting_since is None, "the reply stored")
    log_in(stack, ivy_login)

    assert hal.set_presence("away").status_code in (200, 204)
    who = lambda c: names(tid).get(conversations(tid)[c].assignee_id)  # noqa: E731
    eventually(lambda: who(unanswered) == ivy_login["email"], "the unanswered chat moved to Ivy")
    assert who(answered) == hal_login["email"]


def test_router_workers_racing_on_the_same_conversations_assign_each_once_within_capacity(stack: Stack) -> None:
    tenant = stack.bootstrap()
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=0)
    agents = [new_agent(tid), new_agent(tid)]
    for agent in agents:
        set_capacity(tid, agent, 1)
    chats = [new_conversation(tid) for _ in range(3)]  # stored without a routing job: the test sends them
    extra = [f"router-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in extra:  # two more router processes beside the stack's worker
        stack.start(name, f"{sys.executable} -m workers router")
    try:
        assert stack.log_dir is not None
        for name in extra:
            log = stack.log_dir / f"{name}.log"
            eventually(lambda log=log: log.exists() and "sweeping every" in log.read_text(), f"{name} started")

        async def race() -> None:
            nc = await nats.connect(stack.env["NATS_URL"])
            js = nc.jetstream()
            jobs = [
                js.publish(
                    subjects.route_job(tid),
                    bus.encode({"conversation_id": str(chat)}),
                    headers={"Nats-Msg-Id": f"race:{chat}:{n}"},  # four distinct jobs per conversation
                )
                for chat in chats
                for n in range(4)
            ]
            await asyncio.gather(*jobs)
            info = await js.consumer_info(subjects.JOBS_STREAM, subjects.ROUTE_CONSUMER)
            while info.num_pending or info.num_ack_pending:  # every job handled by some router
                await asyncio.sleep(0.1)
                info = await js.consumer_info(subjects.JOBS_STREAM, subjects.ROUTE_CONSUMER)
            await nc.close()

        asyncio.run(race())
    finally:
        for name in extra:
            stack.stop(name)
    state = conversations(tid)
    assignees = {c: state[c].assignee_id for c in chats}
    assert sorted(map(str, filter(None, assignees.values()))) == sorted(map(str, agents))  # one each: capacity 1
    # Which one waits is the race's: a router may drain a later chat's job before an earlier one is in line.
    served = sorted(str(c) for c, agent in assignees.items() if agent is not None)
    with tenant_session(tid) as session:
        assigned = select(ConversationEvent.conversation_id).where(ConversationEvent.kind == "assigned")
        assert sorted(map(str, session.scalars(assigned))) == served  # each assigned once


def test_the_line_moves_when_an_agent_comes_online_and_when_an_admin_raises_a_limit(
    stack: Stack, visitors: Visitors
) -> None:
    tenant = stack.bootstrap("jo")
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=0)
    login = tenant["agents"][0]
    set_capacity(tid, login["email"], 1)
    first, second = (c for _, c in visitors.write(tenant["site_key"], 2))
    eventually(lambda: waiting_order(tid) == [first, second], "both waiting: nobody is online")

    log_in(stack, login)  # Jo comes online: the first in line is hers, the second still waits
    eventually(lambda: conversations(tid)[first].assignee_id is not None, "the first assigned on login")
    assert waiting_order(tid) == [second]

    set_capacity(tid, login["email"], 2)  # no event for this: the sweep moves the line
    eventually(lambda: conversations(tid)[second].assignee_id is not None, "the second assigned")
    assert waiting_order(tid) == []
