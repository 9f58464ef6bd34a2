"""Routing (do_route_conversation): open conversations go round robin to the tenant's online agents."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from desk.actions.conversations import Conflict, do_assign
from desk.actions.routing import do_route_conversation
from desk.db import tenant_session
from tests.factories import assignee_of, new_agent, new_conversation


def route(tenant: uuid.UUID, conversation: uuid.UUID) -> uuid.UUID | None:
    """Route in a session of its own, as the router worker does; the id of the agent it was given to."""
    with tenant_session(tenant) as session:
        agent, _ = do_route_conversation(session, conversation)
        return agent.id if agent else None


def test_conversations_go_round_robin_to_online_agents(tenant: uuid.UUID) -> None:
    ann, bob, cy = new_agent(tenant), new_agent(tenant), new_agent(tenant)
    conversations = [new_conversation(tenant) for _ in range(6)]
    assert [route(tenant, c) for c in conversations] == [ann, bob, cy, ann, bob, cy]
    assert [assignee_of(tenant, c) for c in conversations] == [ann, bob, cy, ann, bob, cy]


def test_away_and_offline_agents_get_no_conversations(tenant: uuid.UUID) -> None:
    new_agent(tenant, presence="away")
    online = new_agent(tenant)
    new_agent(tenant, presence="offline")
    conversations = [new_conversation(tenant) for _ in range(3)]
    assert [route(tenant, c) for c in conversations] == [online] * 3


def test_an_assigned_conversation_keeps_its_agent(tenant: uuid.UUID) -> None:
    first = new_agent(tenant)
    conversation = new_conversation(tenant)
    assert route(tenant, conversation) == first
    new_agent(tenant)
    assert route(tenant, conversation) is None
    assert assignee_of(tenant, conversation) == first


def test_with_no_agent_online_a_conversation_stays_unassigned(tenant: uuid.UUID) -> None:
    new_agent(tenant, presence="away")
    conversation = new_conversation(tenant)
    assert route(tenant, conversation) is None
    assert assignee_of(tenant, conversation) is None


def test_routers_racing_on_one_conversation_assign_it_once(tenant: uuid.UUID) -> None:
    agents = {new_agent(tenant) for _ in range(4)}
    conversation = new_conversation(tenant)
    start = threading.Barrier(4)

    def racer(_: int) -> uuid.UUID | None:
        start.wait()
        return route(tenant, conversation)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(racer, range(4)))
    [winner] = [r for r in results if r is not None]
    assert winner in agents
    assert assignee_of(tenant, conversation) == winner



def test_a_router_and_an_agent_taking_the_chat_at_once_give_it_to_one_of_them(tenant: uuid.UUID) -> None:
    online = new_agent(tenant)
    taker = new_agent(tenant, presence="away")  # takes it by hand; routing would never choose them

    def router(conversation: uuid.UUID, start: threading.Barrier) -> uuid.UUID | None:
        start.wait()
        return route(tenant, conversation)

    def agent_takes(conversation: uuid.UUID, start: threading.Barrier) -> bool:
        start.wait()
        with tenant_session(tenant) as session:
            try:
                do_assign(session, conversation, taker, taker, expected=None)
                return True
            except Conflict:
                return False

    for _ in range(5):
        conversation, start = new_conversation(tenant), threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            routed, took = pool.submit(router, conversation, start), pool.submit(agent_takes, conversation, start)
            routed_to, taken = routed.result(), took.result()
        assert (routed_to is None) == taken  # exactly one of them got it
        assert assignee_of(tenant, conversation) == (taker if taken else online)


def admin_sets_routing(tenant: uuid.UUID, **form: str) -> None:
    """The owner saves the admin panel's Routing form."""
    from sqlalchemy import select

    from desk import audit
    from desk.actions.admin import do_update_settings
    from desk.models import User

    with tenant_session(tenant) as session:
        owner = session.scalar(select(User).where(User.role == "owner"))
        do_update_settings(session, owner, audit.Client(), "routing", form)


def test_with_auto_assign_off_no_chat_is_routed_and_no_line_forms(tenant: uuid.UUID) -> None:
    from desk.queries.queue import queue_places

    admin_sets_routing(tenant, strategy="round_robin")  # the checkbox unticked
    new_agent(tenant)
    conversation = new_conversation(tenant)
    assert route(tenant, conversation) is None
    with tenant_session(tenant) as session:
        assert queue_places(session) == []


def test_the_strategy_the_admin_chose_is_the_one_used(tenant: uuid.UUID) -> None:
    admin_sets_routing(tenant, auto_assign="on", strategy="least_busy")
    ann, bob = new_agent(tenant), new_agent(tenant)
    first, second, third = (new_conversation(tenant) for _ in range(3))
    assert [route(tenant, first), route(tenant, second)] == [ann, bob]
    with tenant_session(tenant) as session:
        do_assign(session, first, ann, None)  # Ann hands hers back by hand: she has the fewest now
    assert route(tenant, third) == ann
    assert assignee_of(tenant, first) is None  # handed back by hand: it waits for an agent to take it
