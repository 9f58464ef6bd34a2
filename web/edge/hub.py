"""The edge's shared NATS connection, and the registry of open sockets it resynchronises after a reconnect and
cuts when their access is taken away (web/edge/access.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from desk import bus, subjects
from web.edge import access

log = logging.getLogger(__name__)


class Resyncable(Protocol):
    def resync(self) -> None: ...


# How long a draining edge waits for its sockets' messages in flight to be acked before closing anyway (the
# clients re-send whatever was not acked, so this bounds the restart, not the safety).
DRAIN_SECONDS = 8.0
FLUSH_SECONDS = 2.0


class Hub:
    def __init__(self, url: str) -> None:
        self.url = url
        self.nc: Client | None = None
        self.sockets: set[Resyncable] = set()
        # Set on SIGTERM (web/__main__.py): new sockets are turned away, open ones finish and are closed.
        self.draining = asyncio.Event()
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect in the background: the web process serves pages (and says 503 in /healthz) while NATS is away."""
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        # Plain NATS events sent while we were disconnected are gone: every socket catches up from PostgreSQL.
        self.nc = await bus.connect(self.url, "edge", reconnected_cb=self._on_reconnect)
        # One subscription for the whole process (it survives reconnects); each connection decides if it is hit.
        await self.nc.subscribe(subjects.ALL_ACCESS_EVENTS, cb=self._on_access)

    async def _on_access(self, msg: Msg) -> None:
        found = access.heard(msg)
        if found is None:
            return
        log.info("edge: access lost in tenant %s (user %s, %s)", *found)
        for socket in list(self.sockets):
            lose = getattr(socket, "lose_access", None)
            if lose is not None:
                lose(*found)

    async def _on_reconnect(self) -> None:
        log.info("edge: NATS reconnected; resynchronising %d sockets", len(self.sockets))
        for socket in list(self.sockets):
            socket.resync()

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """Before a restart: every socket finishes the messages it has taken, then is told to reconnect."""
        self.draining.set()
        leaving = [s.going_away() for s in list(self.sockets) if hasattr(s, "going_away")]
        log.info("edge: draining %d sockets", len(leaving))
        if leaving:
            await asyncio.wait([asyncio.ensure_future(c) for c in leaving], timeout=timeout)

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.drain()

    def client(self) -> Client:
        if self.nc is None or not self.nc.is_connected:
            raise bus.BusUnavailable("the edge is not connected to NATS yet")
        return self.nc

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]]) -> Subscription:
        """Returns once the server has the subscription (a PING answered after it), so that PostgreSQL read after
        this cannot miss an event sent in between; BusUnavailable if that cannot be confirmed (the client comes
        back, as when NATS is away)."""
        nc = self.client()
        subscription = await nc.subscribe(subject, cb=handler)
        try:
            await bus.flush(nc, FLUSH_SECONDS)
        except Exception as exc:  # nats-py raises several kinds while disconnected or slow
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            raise bus.BusUnavailable(f"subscription to {subject} not confirmed: {exc}") from exc
        return subscription
