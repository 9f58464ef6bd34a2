"""Presence with a grace period, and the sweeper: an agent whose console is open stays online, a silent one is
turned away after the grace and comes back with their next heartbeat, a presence the agent chose is kept, the
router skips agents who are away, and snoozed conversations wake at their time. Real stack, real NATS subject."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
from honcho.environ import parse_procfile
from sqlalchemy import func, select

from desk import subjects
from desk.actions.conversations import do_snooze
from desk.actions.presence import do_heartbeat
from desk.db import system_session, tenant_session
from desk.embedded import NatsServer
from desk.models import Conversation, User
from desk.queries.timeline import timeline
from desk.settings import ROOT
from tests.clients import Agent, BackgroundLoop, start_conversation
from tests.conftest import Stack
from tests.factories import new_agent, new_conversation, tenant_id_of
from workers import sweeper as sweeper_worker

GRACE = 2  # seconds of silence before the test's sweeper turns an agent away
BEAT = 0.5  # seconds between the heartbeats of an agent whose console is open


# -- the people and the parts -------------------------------------------------------------------------------------


class ConsoleEvents:
    """What the tenant's consoles hear: a nats-py subscription to the tenant's agent events, the real subject."""

    def __init__(self, nats_url: str, tenant_id: uuid.UUID) -> None:
        self.heard: list[tuple[float, dict[str, Any]]] = []
        self.loop = BackgroundLoop()

        async def subscribe() -> Any:
            nc = await nats.connect(nats_url)

            async def on_event(msg: Any) -> None:
                self.heard.append((time.monotonic(), json.loads(msg.data)))

            await nc.subscribe(subjects.agent_events(tenant_id), cb=on_event)
            await nc.flush()
            return nc

        self.nc = self.loop.run(subscribe())

    def presence_of(self, user_id: uuid.UUID) -> list[str]:
        return [e["presence"] for _, e in self.heard if e["kind"] == "presence" and e["user_id"] == str(user_id)]

    def changes_of(self, conversation_id: uuid.UUID | str) -> list[dict[str, Any]]:
        wanted = str(conversation_id)
        return [e for _, e in self.heard if e["kind"] == "conversation" and e["conversation_id"] == wanted]

    def wait_for(self, found: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        """When (time.monotonic()) the first event for which `found` is true arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, event in list(self.heard):
                if found(event):
                    return at
            time.sleep(0.05)
        raise AssertionError(f"no such event within {timeout} s; heard {[e for _, e in self.heard]}")

    def close(self) -> None:
        self.loop.run(self.nc.close())
        self.loop.close()


@contextmanager
def console_events(nats_url: str, tenant_id: uuid.UUID) -> Iterator[ConsoleEvents]:
    events = ConsoleEvents(nats_url, tenant_id)
    try:
        yield events
    finally:
        events.close()


def is_presence(user_id: uuid.UUID, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["kind"] == "presence" and e["user_id"] == str(user_id) and e["presence"] == value


def log_in(stack: Stack, login: dict[str, str]) -> Agent:
    agent = Agent(stack.base_url)
    assert agent.login(login["email"], login["password"]).status_code == 200
    return agent


def heartbeat(agent: Agent) -> str:
    """What presence.js posts while a console tab is open; the presence the server answers with."""
    response = agent.client.post("/console/presence/heartbeat", headers=agent.csrf_header())
    assert response.status_code == 200, response.text
    return response.json()["presence"]


@contextmanager
def console_open(agent: Agent) -> Iterator[None]:
    """The agent keeps a console tab open: a heartbeat every BEAT seconds, as presence.js sends them."""
    closed = threading.Event()
    headers = agent.csrf_header()

    def beat() -> None:
        while not closed.wait(BEAT):
            agent.client.post("/console/presence/heartbeat", headers=headers)

    agent.client.post("/console/presence/heartbeat", headers=headers)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        closed.set()
        thread.join(5)


def roster(agent: Agent) -> dict[str, str]:
    """The roster as the agent sees it: each agent's name and presence."""
    page = agent.client.get("/console/roster")
    assert page.status_code == 200
    items = re.findall(r'data-presence="(\w+)">.*?<span class="name">([^<(]+)', page.text, re.S)
    return {name.strip(): presence for presence, name in items}


def user_id_of(login: dict[str, str]) -> uuid.UUID:
    with system_session() as session:
        return session.scalar(select(User.id).where(func.lower(User.email) == login["email"]))


@contextmanager
def worker_with_grace(stack: Stack, grace: int = GRACE) -> Iterator[None]:
    """One more worker, started from the Procfile, whose sweeper turns agents away after `grace` seconds and
    sweeps every second (the stack's own worker keeps the default 60 s grace)."""
    env = {
        **stack.env,
        "DESKBELL_PRESENCE_GRACE_SECONDS": str(grace),
        "DESKBELL_PRESENCE_HEARTBEAT_SECONDS": "1",
        "DESKBELL_SWEEP_SECONDS": "1",
    }
    name = f"worker-grace-{uuid.uuid4().hex[:6]}"
    stack.start(name, parse_procfile((ROOT / "Procfile").read_text()).processes["worker"], env=env)
    try:
        assert stack.log_dir is not None
        log = stack.log_dir / f"{name}.log"
        deadline = time.monotonic() + 20
        while "sweeping every 1 s" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the worker did not start:\n" + stack.logs()
            time.sleep(0.1)
        yield
    finally:
        stack.stop(name)


@pytest.fixture
def sweeper(stack: Stack) -> Iterator[None]:
    with worker_with_grace(stack):
        yield


# -- presence -----------------------------------------------------------------------------------------------------


def test_an_agent_whose_console_is_open_stays_online_past_the_grace(stack: Stack, sweeper: None) -> None:
    tenant = stack.bootstrap("ann")
    ann = log_in(stack, tenant["agents"][0])
    with console_events(stack.env["NATS_URL"], tenant_id_of(tenant)) as events, console_open(ann):
        time.sleep(GRACE * 2 + 1)
        assert roster(ann) == {"Ann": "online", "Owner": "offline"}
    assert events.presence_of(user_id_of(tenant["agents"][0])) == []


def test_a_silent_agent_is_turned_away_after_the_grace_and_every_console_hears_it(stack: Stack, sweeper: None) -> None:
    tenant = stack.bootstrap("ann", "bob")
    with console_events(stack.env["NATS_URL"], tenant_id_of(tenant)) as events:
        logging_in_at = time.monotonic()  # the login's heartbeat is stored after this, never before
        ann = log_in(stack, tenant["agents"][0])  # and closes the tab: no heartbeat
        bob = log_in(stack, tenant["agents"][1])
        with console_open(bob):
            turned_away_at = events.wait_for(is_presence(user_id_of(tenant["agents"][0]), "away"), GRACE + 5)
            assert roster(bob) == {"Ann": "away", "Bob": "online", "Owner": "offline"}
    assert turned_away_at - logging_in_at >= GRACE - 0.2, "turned away before the grace was over"
    assert ann.client.get("/console/roster").status_code == 200  # away, not logged out


@pytest.mark.parametrize("chosen", ["away", "offline"])
def test_a_presence_the_agent_chose_is_kept_while_their_console_is_open(
    stack: Stack, sweeper: None, chosen: str
) -> None:
    tenant = stack.bootstrap("ann")
    ann_id = user_id_of(tenant["agents"][0])
    ann = log_in(stack, tenant["agents"][0])
    with console_events(stack.env["NATS_URL"], tenant_id_of(tenant)) as events:
        assert ann.set_presence(chosen).status_code == 200
        with console_open(ann):
            time.sleep(GRACE * 2 + 1)
            assert heartbeat(ann) == chosen
        assert roster(ann) == {"Ann": chosen, "Owner": "offline"}
    assert events.presence_of(ann_id) == [chosen]


def test_an_agent_the_sweeper_turned_away_is_back_online_with_their_next_heartbeat(stack: Stack, sweeper: None) -> None:
    tenant = stack.bootstrap("ann")
    ann_id = user_id_of(tenant["agents"][0])
    ann = log_in(stack, tenant["agents"][0])
    with console_events(stack.env["NATS_URL"], tenant_id_of(tenant)) as events:
        events.wait_for(is_presence(ann_id, "away"), GRACE + 5)  # the laptop slept
        assert roster(ann) == {"Ann": "away", "Owner": "offline"}

        assert heartbeat(ann) == "online"  # and woke up with the console still open

        events.wait_for(is_presence(ann_id, "online"), 5)
        assert roster(ann) == {"Ann": "online", "Owner": "offline"}
        assert heartbeat(ann) == "online"
    assert events.presence_of(ann_id) == ["away", "online"]


def test_a_new_conversation_goes_to_an_online_agent_not_to_one_turned_away(stack: Stack, sweeper: None) -> None:
    tenant = stack.bootstrap("ann", "bob")  # Ann first: the router would pick her if she were online
    ann_id, bob_id = user_id_of(tenant["agents"][0]), user_id_of(tenant["agents"][1])
    tenant_id = tenant_id_of(tenant)
    with console_events(stack.env["NATS_URL"], tenant_id) as events:  # listening before Ann can be turned away
        log_in(stack, tenant["agents"][0])
        bob = log_in(stack, tenant["agents"][1])
        with console_open(bob):
            events.wait_for(is_presence(ann_id, "away"), GRACE + 5)
            conversation_id = start_conversation(stack.base_url, tenant["site_key"], "Is anyone there?")
            events.wait_for(lambda e: e.get("conversation_id") == conversation_id and e.get("change") == "routed", 10)
    [event] = [e for e in events.changes_of(conversation_id) if e["change"] == "routed"]
    assert event["assignee_id"] == str(bob_id)


# -- snoozed conversations ------------------------------------------------------------------------------------------


def test_a_snoozed_conversation_wakes_at_its_time_with_a_reopened_event(stack: Stack, sweeper: None) -> None:
    tenant = stack.bootstrap("ann")
    tenant_id, ann_id = tenant_id_of(tenant), user_id_of(tenant["agents"][0])
    conversation_id = uuid.UUID(start_conversation(stack.base_url, tenant["site_key"], "Call me back at 3"))
    until = datetime.now(UTC) + timedelta(seconds=2)
    with console_events(stack.env["NATS_URL"], tenant_id) as events:
        with tenant_session(tenant_id) as session:
            do_snooze(session, conversation_id, ann_id, until)
        snoozed_at = time.monotonic()
        woke_at = events.wait_for(
            lambda e: e.get("conversation_id") == str(conversation_id) and e.get("change") == "reopened", 10
        )
    assert woke_at - snoozed_at >= 1.5, "woke before its time"
    [signal] = [e for e in events.changes_of(conversation_id) if e["change"] == "reopened"]
    assert signal["status"] == "open" and signal["reason"] == "snooze ended"
    with tenant_session(tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        assert (conversation.status, conversation.snoozed_until) == ("open", None)
        last = timeline(session, conversation_id)[-1].event
    assert last is not None and last.id == signal["event_id"]
    assert (last.kind, last.detail["reason"], last.author_id) == ("reopened", "snooze ended", None)


# -- many sweepers --------------------------------------------------------------------------------------------------


def test_sweepers_running_at_once_change_each_agent_and_each_conversation_once(
    tenant: uuid.UUID, nats_server: NatsServer
) -> None:
    async def four_workers_sweep_at_once() -> None:
        connections = [await nats.connect(nats_server.url) for _ in range(4)]
        await asyncio.gather(*(sweeper_worker.sweep(nc, timedelta(milliseconds=400)) for nc in connections))
        for nc in connections:
            await nc.close()

    with console_events(nats_server.url, tenant) as events:
        agents = [new_agent(tenant) for _ in range(12)]
        for agent in agents:  # each had a console open, then went silent
            with tenant_session(tenant) as session:
                do_heartbeat(session, agent)
        conversations = [new_conversation(tenant) for _ in range(12)]
        until = datetime.now(UTC) + timedelta(seconds=2)
        for conversation in conversations:
            with tenant_session(tenant) as session:
                do_snooze(session, conversation, agents[0], until)
        time.sleep((until - datetime.now(UTC)).total_seconds() + 0.1)

        asyncio.run(four_workers_sweep_at_once())
        time.sleep(0.5)  # the last events arrive
    assert {a: events.presence_of(a) for a in agents} == {a: ["away"] for a in agents}
    reopened = {c: [e["change"] for e in events.changes_of(c)] for c in conversations}
    assert reopened == {c: ["reopened"] for c in conversations}
    with tenant_session(tenant) as session:
        assert set(session.scalars(select(User.presence).where(User.id.in_(agents)))) == {"away"}
        for conversation in conversations:
            kinds = [e.event.kind for e in timeline(session, conversation) if e.event is not None]
            assert kinds == ["snoozed", "reopened"]
            assert session.get(Conversation, conversation).status == "open"
