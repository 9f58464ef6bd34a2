"""The sweeper: every few seconds, turns silent agents away and wakes snoozed conversations whose time has come
(docs/architecture.md, "The console: presence and the sweeper"; docs/operations.md, "Presence and the sweeper").

Every worker process runs one, next to its consumers (workers/__main__.py). No leader is needed: each sweep is
one UPDATE per kind of row over rows locked with SKIP LOCKED (desk/actions/presence.py), so with N workers every
row changes in exactly one of them, and only that one publishes the event.

The events go on plain NATS after the commit, like every `desk.ev.*` event: one lost in a NATS hiccup leaves a
console's roster or list stale until its next update or reload; PostgreSQL has the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from nats.aio.client import Client
from sqlalchemy import select

from desk import bus, metrics, signals, subjects
from desk.actions import lapses
from desk.actions.presence import Woken, do_sweep_presence, do_wake_snoozed
from desk.db import system_session, tenant_session
from desk.models import Conversation
from desk.settings import Presence, Routing
from workers import router
from workers.base import OUTAGES

log = logging.getLogger(__name__)


def _sweep_presence(grace: timedelta) -> list[tuple[uuid.UUID, uuid.UUID]]:
    with system_session() as session:  # every tenant's agents, on purpose
        return do_sweep_presence(session, grace)


def _wake_snoozed() -> list[Woken]:
    with system_session() as session:  # every tenant's conversations, on purpose
        return do_wake_snoozed(session)


async def sweep(nc: Client, grace: timedelta, routing: Routing | None = None) -> tuple[int, int]:
    """One sweep: agents turned away and conversations woken, each published to its tenant's consoles; then
    routing's (`sweep_routing`)."""
    away = await asyncio.to_thread(_sweep_presence, grace)
    for user_id, tenant_id in away:
        await nc.publish(subjects.agent_events(tenant_id), bus.encode(signals.presence_changed(user_id, "away")))
    woken = await asyncio.to_thread(_wake_snoozed)
    for conversation in woken:
        await nc.publish(subjects.agent_events(conversation.tenant_id), bus.encode(conversation.signal()))
    if away or woken:
        await bus.flush(nc)
        log.info("sweeper: %d agent(s) turned away, %d conversation(s) woken", len(away), len(woken))
    await sweep_routing(nc, routing or Routing(), away)
    return len(away), len(woken)


# -- routing (docs/architecture.md, "Routing and the queue") ----------------------------------------------------------


Lapses = tuple[list[lapses.Requeued], list[lapses.Missed], list[tuple[uuid.UUID, uuid.UUID, int]]]


def _lapses(config: Routing) -> Lapses:
    with system_session() as session:  # every tenant's conversations, on purpose
        unopened = lapses.do_take_back_unopened(session, config)
        missed = lapses.do_mark_missed(session, config)
        idle = lapses.idle_conversations(session, config)
        session.rollback()
        return unopened, missed, idle


def _resolve_idle(tenant_id: uuid.UUID, conversation_id: uuid.UUID, seconds: int) -> lapses.IdleResolved | None:
    with tenant_session(tenant_id) as session:
        return lapses.do_resolve_idle(session, conversation_id, seconds)


def _queued_tenants() -> list[uuid.UUID]:
    with system_session() as session:  # every tenant with someone in line, on purpose
        queued = select(Conversation.tenant_id).distinct().where(
            Conversation.status == "open", Conversation.assignee_id.is_(None), Conversation.queued_at.is_not(None)
        )
        return list(session.scalars(queued))


async def sweep_routing(nc: Client, config: Routing, away: Sequence[tuple[uuid.UUID, uuid.UUID]] = ()) -> None:
    """Agents the sweep turned away hand back their unanswered chats; unopened assignments go back to the queue;
    missed and idle conversations are marked and resolved; then every tenant with a queue is drained and its
    visitors hear their places again (so the estimates move, and a lost event costs one sweep at most)."""
    for user_id, tenant_id in away:
        requeued, assigned, places = await asyncio.to_thread(router.drain, tenant_id, user_id)
        await router.publish(nc, tenant_id, assigned, places, requeued)
    unopened, missed, idle = await asyncio.to_thread(_lapses, config)
    for change in unopened:
        await nc.publish(subjects.agent_events(change.tenant_id), bus.encode(change.signal()))
    for mark in missed:
        metrics.MISSED_CHATS.inc()
        await nc.publish(subjects.agent_events(mark.tenant_id), bus.encode(mark.signal()))
        for hook in lapses.MISSED_HOOKS:
            try:
                hook(mark)
            except Exception:
                log.exception("sweeper: missed-chat hook %r failed for %s", hook, mark.conversation_id)
    for tenant_id, conversation_id, seconds in idle:
        resolved = await asyncio.to_thread(_resolve_idle, tenant_id, conversation_id, seconds)
        if resolved is None:
            continue
        data = bus.encode({"kind": "message", "message": resolved.message})
        await nc.publish(subjects.visitor_events(tenant_id, resolved.visitor_id), data)
        await nc.publish(subjects.agent_events(tenant_id), data)
        await nc.publish(subjects.agent_events(tenant_id), bus.encode(resolved.signal()))
    for tenant_id in await asyncio.to_thread(_queued_tenants):
        _, assigned, places = await asyncio.to_thread(router.drain, tenant_id)
        await router.publish(nc, tenant_id, assigned, places)
    if unopened or missed or idle:
        log.info(
            "sweeper: %d unopened assignment(s) taken back, %d missed, %d idle resolved",
            len(unopened),
            len(missed),
            len(idle),
        )
    await bus.flush(nc)


async def run(nc: Client, stop: asyncio.Event, config: Presence, routing: Routing | None = None) -> None:
    """Sweep every `config.sweep_seconds` until `stop` is set; an outage skips a sweep, never ends the loop."""
    grace = timedelta(seconds=config.grace_seconds)
    log.info("sweeper: sweeping every %d s, presence grace %d s", config.sweep_seconds, config.grace_seconds)
    while not stop.is_set():
        try:
            await sweep(nc, grace, routing)
        except OUTAGES as exc:
            log.warning("sweeper: %s: %s; trying again in %d s", type(exc).__name__, exc, config.sweep_seconds)
        except Exception:
            log.exception("sweeper: sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.sweep_seconds)
