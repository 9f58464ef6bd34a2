"""The router worker: assigns conversations to agents and tells waiting visitors their place in line
(docs/architecture.md, "Routing and the queue").

Two inputs, one action (drain the tenant's queue, desk/actions/routing.py):
- the `router` consumer's jobs, one per new conversation (the store worker publishes them);
- the consoles' events on `desk.ev.*.agents` (queue group `router`, so one worker hears each): a conversation
  resolved or given back, an agent going online (their room) or away and offline (their unanswered chats go back
  to the queue). These are plain NATS and may be lost; the sweeper drains every tenant with a queue each sweep,
  so a lost one costs at most a sweep's delay.

A new conversation first meets the tenant's routing rules (desk/actions/rules.py), which may give it a team.

After every drain the router publishes the assignments to the tenant's consoles, and each waiting visitor's
place (`signals.queue_position`, position 0 once assigned) on the visitor's subject; the edge sends it as a
`queue` frame (docs/protocol.md). A conversation held outside its team's business hours has no place: its
visitor hears position 0 (no live line to show) until the hours open and it is routed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy.orm import Session

from desk import bus, signals, subjects
from desk.actions.routing import (
    Assigned,
    Requeued,
    do_drain_queue,
    do_queue_conversation,
    do_requeue_absent_agent,
    held_conversations,
)
from desk.actions.rules import TeamRouted, do_apply_rules
from desk.db import tenant_session
from desk.queries.queue import Place, queue_places

log = logging.getLogger(__name__)

LISTEN_SUBJECT = subjects.agent_events("*")
LISTEN_GROUP = "router"
# Console events after which a queue may move: room freed (resolved, pending, snoozed, unassigned, transferred to
# a team), a queue grew (unassigned), or an agent's availability changed.
FREEING = frozenset({"resolved", "pending", "snoozed", "unassigned", "transferred", "reopened"})


def visitor_places(session: Session) -> list[Place]:
    """What each queued visitor hears: their place in line, or position 0 while their line is outside business
    hours (held: no place, no estimate)."""
    held = held_conversations(session)
    waiting = {conversation for conversation, _ in held}
    found = [p for p in queue_places(session) if p.conversation_id not in waiting]
    return found + [Place(conversation, visitor, 0, None) for conversation, visitor in held]


def _route(
    tenant_id: uuid.UUID, conversation_ids: list[uuid.UUID]
) -> tuple[list[TeamRouted], list[Assigned], list[Place], Exception | None]:
    """Put a tenant's new conversations in their lines in turn, then drain the queue and read the places once:
    a burst of new chats costs one drain, and tells each waiting visitor their place once, not once per new
    chat. A conversation that fails stops the batch: what was queued before it is drained and announced, and
    the failure returned."""
    routed: list[TeamRouted] = []
    queued = False
    failure: Exception | None = None
    with tenant_session(tenant_id) as session:
        for conversation_id in dict.fromkeys(conversation_ids):  # a job may come twice (a redelivered message)
            try:
                team = do_apply_rules(session, conversation_id)  # the team first: the agent is picked from it
                routed += [team] if team else []
                queued = do_queue_conversation(session, conversation_id) is not None or queued
            except Exception as exc:
                session.rollback()
                failure = exc
                break
        assigned = do_drain_queue(session, tenant_id) if queued else []
        return routed, assigned, visitor_places(session), failure


def drain(tenant_id: uuid.UUID, absent: uuid.UUID | None = None) -> tuple[list[Requeued], list[Assigned], list[Place]]:
    """Take back an absent agent's unanswered chats (when given), drain the tenant's queue, and read the places."""
    with tenant_session(tenant_id) as session:
        requeued = do_requeue_absent_agent(session, absent) if absent else []
        assigned = do_drain_queue(session, tenant_id)
        return requeued, assigned, visitor_places(session)


async def publish(
    nc: Client,
    tenant_id: uuid.UUID,
    assigned: Iterable[Assigned],
    places: Iterable[Place],
    changes: Iterable[Requeued | TeamRouted] = (),
) -> None:
    """Tell the consoles what routing changed, and each waiting (or just assigned) visitor their place."""
    agents = subjects.agent_events(tenant_id)
    for change in changes:
        await nc.publish(agents, bus.encode(change.signal()))
    for a in assigned:
        await nc.publish(agents, bus.encode(a.signal()))
        served = signals.queue_position(a.conversation_id, 0, 0)
        await nc.publish(subjects.visitor_events(tenant_id, a.visitor_id), bus.encode(served))
    for p in places:
        await nc.publish(
            subjects.visitor_events(tenant_id, p.visitor_id),
            bus.encode(signals.queue_position(p.conversation_id, p.position, p.wait_seconds)),
        )
    await bus.flush(nc)


async def handle(nc: Client, msgs: list[Msg]) -> None:
    by_tenant: dict[uuid.UUID, list[uuid.UUID]] = {}
    for msg in msgs:
        conversation_id = uuid.UUID(json.loads(msg.data)["conversation_id"])
        by_tenant.setdefault(subjects.tenant_of(msg.subject), []).append(conversation_id)
    for tenant_id, conversation_ids in by_tenant.items():
        routed, assigned, places, failure = await asyncio.to_thread(_route, tenant_id, conversation_ids)
        await publish(nc, tenant_id, assigned, places, routed)
        if failure is not None:
            raise failure  # workers/base.py retries the batch one message at a time


def _wanted(event: dict[str, Any]) -> tuple[bool, uuid.UUID | None]:
    """Whether a console event may move the queue, and the agent whose chats go back (away or offline)."""
    kind = event.get("kind")
    if kind == signals.PRESENCE:
        absent = uuid.UUID(event["user_id"]) if event.get("presence") != "online" else None
        return True, absent
    if kind == signals.CONVERSATION and event.get("by") != "routing":
        return event.get("change") in FREEING, None
    return False, None


async def listen(nc: Client, stop: asyncio.Event) -> None:
    """Drain a tenant's queue when its consoles' events say it may move; runs beside the router consumer.

    Events are coalesced per tenant: while one drain runs, more events for that tenant make one more drain."""
    dirty: dict[uuid.UUID, set[uuid.UUID]] = {}  # tenant -> agents gone away (may be empty)
    wake = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        if msg.data.startswith(b'{"kind":"message"'):
            return  # the bulk of the traffic (desk.bus.encode's shape), never a reason to route: not even parsed
        try:
            event = json.loads(msg.data)
            wanted, absent = _wanted(event)
        except (ValueError, KeyError):
            return
        if not wanted:
            return
        tenant_id = uuid.UUID(msg.subject.split(".")[2])
        absent_agents = dirty.setdefault(tenant_id, set())
        if absent:
            absent_agents.add(absent)
        wake.set()

    subscription = await nc.subscribe(LISTEN_SUBJECT, queue=LISTEN_GROUP, cb=on_event)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 1.0)
            wake.clear()
            while dirty:
                tenant_id, absent_agents = dirty.popitem()
                try:
                    for absent in absent_agents or {None}:
                        requeued, assigned, places = await asyncio.to_thread(drain, tenant_id, absent)
                        await publish(nc, tenant_id, assigned, places, requeued)
                except Exception:
                    # The sweeper drains every queue within a sweep; this was only the quick path.
                    log.exception("router: draining tenant %s failed", tenant_id)
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
