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
from datetime import timedelta

from nats.aio.client import Client

from desk import bus, signals, subjects
from desk.actions.presence import Woken, do_sweep_presence, do_wake_snoozed
from desk.db import system_session
from desk.settings import Presence
from workers.base import OUTAGES

log = logging.getLogger(__name__)


def _sweep_presence(grace: timedelta) -> list[tuple[uuid.UUID, uuid.UUID]]:
    with system_session() as session:  # every tenant's agents, on purpose
        return do_sweep_presence(session, grace)


def _wake_snoozed() -> list[Woken]:
    with system_session() as session:  # every tenant's conversations, on purpose
        return do_wake_snoozed(session)


async def sweep(nc: Client, grace: timedelta) -> tuple[int, int]:
    """One sweep: agents turned away and conversations woken, each published to its tenant's consoles."""
    away = await asyncio.to_thread(_sweep_presence, grace)
    for user_id, tenant_id in away:
        await nc.publish(subjects.agent_events(tenant_id), bus.encode(signals.presence_changed(user_id, "away")))
    woken = await asyncio.to_thread(_wake_snoozed)
    for conversation in woken:
        await nc.publish(subjects.agent_events(conversation.tenant_id), bus.encode(conversation.signal()))
    if away or woken:
        await nc.flush()
        log.info("sweeper: %d agent(s) turned away, %d conversation(s) woken", len(away), len(woken))
    return len(away), len(woken)


async def run(nc: Client, stop: asyncio.Event, config: Presence) -> None:
    """Sweep every `config.sweep_seconds` until `stop` is set; an outage skips a sweep, never ends the loop."""
    grace = timedelta(seconds=config.grace_seconds)
    log.info("sweeper: sweeping every %d s, presence grace %d s", config.sweep_seconds, config.grace_seconds)
    while not stop.is_set():
        try:
            await sweep(nc, grace)
        except OUTAGES as exc:
            log.warning("sweeper: %s: %s; trying again in %d s", type(exc).__name__, exc, config.sweep_seconds)
        except Exception:
            log.exception("sweeper: sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.sweep_seconds)
