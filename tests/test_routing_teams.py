"""Routing to teams with the real workers (issue 8): rules pick the team, a transfer to a team joins its line, and
business hours hold a team's line until they open.

Visitors open the widget's session on a page and write over a real socket; agents log in and act over the console's
HTTP; the admin's changes (teams, rules, business hours) are the admin actions the admin pages call.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select

from desk import audit
from desk.actions import hours, rules, teams
from desk.db import tenant_session
from desk.models import ConversationEvent, User
from tests.clients import eventually
from tests.conftest import Stack
from tests.factories import tenant_id_of
from tests.test_routing_queue import conversations, log_in, resolve, set_capacity, set_routing, waiting_order

ADMIN = audit.Client("127.0.0.1", "test")


class PageVisitor:
    """A visitor whose browser is on `url` (the widget's session request says so), speaking over a real socket."""

    def __init__(self, stack: Stack, site_key: str, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.stack, self.site_key, self.url, self.loop = stack, site_key, url, loop
        self.ws: Any = None
        self.frames: list[dict[str, Any]] = []

    def write(self, body: str) -> uuid.UUID:
        """Open the session on the page, connect, write; the conversation the ack names."""
        return self.loop.run_until_complete(self._write(body))

    async def _write(self, body: str) -> uuid.UUID:
        page = {"url": self.url, "title": "Shop"}
        async with httpx.AsyncClient(base_url=self.stack.base_url, timeout=10) as client:
            response = await client.post(
                "/api/v1/widget/session", json={"site_key": self.site_key, "page": page, "language": "en-US"}
            )
        response.raise_for_status()
        data = response.json()
        self.ws = await websockets.connect(f"{data['ws_url']}?token={data['visitor_token']}")
        await self.ws.send(json.dumps({"type": "hello", "last_seq": 0}))
        await self.expect(lambda f: f["type"] == "welcome")
        await self.ws.send(json.dumps({"type": "message", "client_id": "first", "body": body}))
        ack = await self.expect(lambda f: f["type"] == "ack")
        return uuid.UUID(ack["conversation_id"])

    async def expect(self, wanted: Any, timeout: float = 30) -> dict[str, Any]:
        async def next_wanted() -> dict[str, Any]:
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                if frame["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                if wanted(frame):
                    return frame

        return await asyncio.wait_for(next_wanted(), timeout)

    def place(self, position: int) -> dict[str, Any]:
        """Wait for the `queue` frame that tells this visitor `position` (0: no place in a live line)."""
        wanted = lambda f: f["type"] == "queue" and f["position"] == position  # noqa: E731
        return self.loop.run_until_complete(self.expect(wanted))

    def close(self) -> None:
        if self.ws is not None:
            self.loop.run_until_complete(self.ws.close())


class Visitors:
    def __init__(self, stack: Stack) -> None:
        self.stack, self.loop, self.open = stack, asyncio.new_event_loop(), []

    def on(self, site_key: str, url: str) -> PageVisitor:
        visitor = PageVisitor(self.stack, site_key, url, self.loop)
        self.open.append(visitor)
        return visitor

    def close(self) -> None:
        for visitor in self.open:
            visitor.close()
        self.loop.close()


@pytest.fixture
def visitors(stack: Stack) -> Iterator[Visitors]:
    crowd = Visitors(stack)
    yield crowd
    crowd.close()


def ids_by_email(tenant_id: uuid.UUID) -> dict[str, uuid.UUID]:
    with tenant_session(tenant_id) as session:
        return {email: i for i, email in session.execute(select(User.id, User.email)).all()}


def as_owner(tenant_id: uuid.UUID, do: Any) -> Any:
    """An admin change, made by the tenant's owner through the admin action."""
    with tenant_session(tenant_id) as session:
        owner = session.scalar(select(User).where(User.role == "owner"))
        return do(session, owner)


def new_team(tenant_id: uuid.UUID, name: str, *members: uuid.UUID) -> uuid.UUID:
    team = as_owner(tenant_id, lambda s, o: teams.do_create_team(s, o, ADMIN, name))
    form = {"name": name, "member_ids": [str(m) for m in members]}
    as_owner(tenant_id, lambda s, o: teams.do_update_team(s, o, ADMIN, team.id, form))
    return team.id


def test_a_rule_sends_a_chat_from_pricing_to_a_sales_agent_and_never_to_support(
    stack: Stack, visitors: Visitors
) -> None:
    tenant = stack.bootstrap("sue", "sam")  # Sue's account is older: round robin alone would pick her first
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=0)
    people = ids_by_email(tid)
    sue, sam = (people[login["email"]] for login in tenant["agents"])
    set_capacity(tid, sam, 1)  # (the agents page's form: its teams too, so before the teams)
    new_team(tid, "Support", sue)
    sales = new_team(tid, "Sales", sam)
    rule = {"when": "page_contains", "value": "/pricing", "team_id": str(sales)}
    as_owner(tid, lambda s, o: rules.do_add_rule(s, o, ADMIN, rule))
    for login in tenant["agents"]:
        log_in(stack, login)

    first = visitors.on(tenant["site_key"], "https://shop.test/pricing?plan=team").write("How much for 5 seats?")
    eventually(lambda: conversations(tid)[first].assignee_id == sam, "the pricing chat given to Sam (Sales)")
    assert conversations(tid)[first].team_id == sales

    # Sam is full: the next pricing chat waits for him, though Sue (Support) has room.
    second_visitor = visitors.on(tenant["site_key"], "https://shop.test/pricing")
    second = second_visitor.write("And for 50?")
    second_visitor.place(1)
    state = conversations(tid)[second]
    assert (state.team_id, state.assignee_id) == (sales, None)
    blog = visitors.on(tenant["site_key"], "https://shop.test/blog").write("Nice post")
    eventually(lambda: conversations(tid)[blog].assignee_id == sue, "a chat no rule matches goes to Sue")
    assert conversations(tid)[blog].team_id is None and conversations(tid)[second].assignee_id is None
    with tenant_session(tid) as session:
        event = session.scalars(
            select(ConversationEvent).where(ConversationEvent.conversation_id == first).order_by(ConversationEvent.id)
        ).first()
    assert event is not None and (event.detail["team_name"], event.detail["by"]) == ("Sales", "routing")


def test_a_chat_transferred_to_a_team_waits_in_its_line_for_a_member_with_room(
    stack: Stack, visitors: Visitors
) -> None:
    tenant = stack.bootstrap("bo", "al")
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=0)
    bo_login, al_login = tenant["agents"]
    people = ids_by_email(tid)
    bo, al = people[bo_login["email"]], people[al_login["email"]]
    set_capacity(tid, bo, 1)  # (the agents page's form: its teams too, so before the team)
    billing = new_team(tid, "Billing", bo)
    bo_console = log_in(stack, bo_login)  # only Bo is online: the first chat is his, and he is full
    invoice = visitors.on(tenant["site_key"], "https://shop.test/").write("Where is my invoice?")
    eventually(lambda: conversations(tid)[invoice].assignee_id == bo, "the first chat Bo's")
    al_console = log_in(stack, al_login)
    refund_visitor = visitors.on(tenant["site_key"], "https://shop.test/")
    refund = refund_visitor.write("I was charged twice")
    eventually(lambda: conversations(tid)[refund].assignee_id == al, "the second chat Al's (Bo is full)")

    # Al hands it to Billing: it leaves Al and waits in Billing's line, though Al has room.
    page = al_console.conversation_page(str(refund))
    response = al_console.client.post(
        f"/console/c/{refund}/transfer",
        data={"to": f"team:{billing}", "note": "Double charge", "csrf_token": al_console.csrf(page)},
    )
    assert response.status_code in (200, 303), response.text
    refund_visitor.place(1)
    assert waiting_order(tid) == [refund]
    state = conversations(tid)[refund]
    assert (state.team_id, state.assignee_id) == (billing, None)

    resolve(bo_console, invoice)  # Bo has room again: the chat in Billing's line is his
    eventually(lambda: conversations(tid)[refund].assignee_id == bo, "the transferred chat given to Bo")
    refund_visitor.place(0)
    assert waiting_order(tid) == []


def test_outside_business_hours_chats_are_held_without_a_place_and_routed_in_order_when_they_open(
    stack: Stack, visitors: Visitors
) -> None:
    tenant = stack.bootstrap("hu")
    tid = tenant_id_of(tenant)
    set_routing(tid, open_timeout_seconds=0)
    login = tenant["agents"][0]
    hu = ids_by_email(tid)[login["email"]]
    set_capacity(tid, hu, 1)
    closed = {"timezone": "Europe/Paris", **{f"hours_{d}": "" for d in hours.WEEKDAYS}}
    as_owner(tid, lambda s, o: hours.do_save_schedule(s, o, ADMIN, None, closed))
    log_in(stack, login)  # Hu is online, with room, but the tenant is closed

    early_visitor, late_visitor = (visitors.on(tenant["site_key"], "https://shop.test/") for _ in range(2))
    early = early_visitor.write("Anyone there?")
    assert early_visitor.place(0)["wait_seconds"] is None  # held: no place in a live line, no estimate
    late = late_visitor.write("Hello?")
    late_visitor.place(0)
    state = conversations(tid)
    assert state[early].assignee_id is None and state[late].assignee_id is None
    assert not any(f["type"] == "queue" and f["position"] > 0 for f in early_visitor.frames + late_visitor.frames)

    always = {"timezone": "Europe/Paris", **{f"hours_{d}": "00:00-24:00" for d in hours.WEEKDAYS}}
    as_owner(tid, lambda s, o: hours.do_save_schedule(s, o, ADMIN, None, always))
    # The next sweep routes them in arrival order: the first to Hu, the second waits for him, number 1 in line.
    eventually(lambda: conversations(tid)[early].assignee_id == hu, "the first held chat given to Hu")
    late_visitor.place(1)
    assert conversations(tid)[late].assignee_id is None
