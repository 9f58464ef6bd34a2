"""A visitor's WebSocket: `/ws/visitor?token=…` (docs/protocol.md, steps 2-3).

Three tasks per socket: `_receive` reads and validates frames; `_send_outbox` publishes the visitor's
messages to JetStream one at a time (so seq order is send order) and acks each only once it is stored;
`_deliver` sends the thread in seq order with no gap and no duplicate, from NATS events when they line up
and from PostgreSQL when they do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from nats.aio.msg import Msg
from starlette.websockets import WebSocket, WebSocketDisconnect

from desk import protocol, subjects, tokens
from desk.actions.messages import Inbound, as_event
from desk.bus import BusUnavailable, publish_durable
from desk.db import tenant_session
from desk.models import Site, Visitor
from desk.queries.conversations import message_by_client_id, thread_after
from desk.settings import Settings
from web.edge.hub import Hub

log = logging.getLogger(__name__)

CLOSE_BAD_TOKEN = 4401
CLOSE_BAD_ORIGIN = 4403
CLOSE_SILENT = 4408
CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later
REPLAY_PAGE = 500
RESYNC = object()  # a marker on the delivery queue: catch up from PostgreSQL


def _load_site_and_visitor(claims: tokens.VisitorClaims) -> tuple[Site | None, Visitor | None]:
    with tenant_session(claims.tenant_id) as session:
        return session.get(Site, claims.site_id), session.get(Visitor, claims.visitor_id)


def _thread_after(claims: tokens.VisitorClaims, after: int) -> list[dict[str, Any]]:
    with tenant_session(claims.tenant_id) as session:
        return [as_event(m) for m in session.scalars(thread_after(claims.visitor_id, after, REPLAY_PAGE))]


def _last_seq(claims: tokens.VisitorClaims) -> int:
    with tenant_session(claims.tenant_id) as session:
        visitor = session.get(Visitor, claims.visitor_id)
        return visitor.last_seq if visitor else 0


def _stored(claims: tokens.VisitorClaims, client_id: str) -> dict[str, Any] | None:
    with tenant_session(claims.tenant_id) as session:
        message = session.scalar(message_by_client_id(claims.visitor_id, client_id))
        return as_event(message) if message else None


class VisitorSocket:
    def __init__(self, ws: WebSocket, claims: tokens.VisitorClaims, hub: Hub, config: Settings) -> None:
        self.ws, self.claims, self.hub, self.config = ws, claims, hub, config
        self.limits = config.limits
        self.delivered: int | None = None  # highest seq sent on this socket; None until `hello`
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.outbox: asyncio.Queue[protocol.Send] = asyncio.Queue(config.limits.pending_messages)
        self.deliveries: asyncio.Queue[Any] = asyncio.Queue()
        self.send_lock = asyncio.Lock()

    # -- sending --------------------------------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(frame, separators=(",", ":")))

    def resync(self) -> None:
        self.deliveries.put_nowait(RESYNC)

    async def _on_event(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        if event.get("kind") != "message":
            return
        stored = event["message"]
        future = self.waiting.get(stored["client_id"]) if stored["sender"] == "visitor" else None
        if future is not None and not future.done():
            future.set_result(stored)
        self.deliveries.put_nowait(stored)

    async def _deliver(self) -> None:
        while True:
            item = await self.deliveries.get()
            if self.delivered is None:
                continue  # before hello: the hello replay reads PostgreSQL, which already has it
            if item is not RESYNC and item["seq"] <= self.delivered:
                continue
            if item is not RESYNC and item["seq"] == self.delivered + 1:
                await self.send(protocol.message(item))
                self.delivered = item["seq"]
                continue
            await self._replay()

    async def _replay(self) -> None:
        assert self.delivered is not None
        while True:
            page = await asyncio.to_thread(_thread_after, self.claims, self.delivered)
            for stored in page:
                await self.send(protocol.message(stored))
                self.delivered = stored["seq"]
            if len(page) < REPLAY_PAGE:
                return

    async def _hello(self, hello: protocol.Hello) -> None:
        last_seq = await asyncio.to_thread(_last_seq, self.claims)
        await self.send(protocol.welcome(str(self.claims.visitor_id), last_seq))
        self.delivered = min(hello.last_seq, last_seq)
        self.resync()

    # -- the visitor's messages -----------------------------------------------------------------------------

    async def _send_outbox(self) -> None:
        while True:
            frame = await self.outbox.get()
            await self._store(frame)

    async def _store(self, frame: protocol.Send) -> None:
        claims = self.claims
        future = self.waiting.setdefault(frame.client_id, asyncio.get_running_loop().create_future())
        inbound = Inbound(visitor_id=claims.visitor_id, client_id=frame.client_id, body=frame.body)
        try:
            try:
                puback = await publish_durable(
                    self.hub.client(),
                    subjects.inbound(claims.tenant_id, claims.visitor_id),
                    inbound.payload(),
                    subjects.inbound_msg_id(claims.visitor_id, frame.client_id),
                )
            except BusUnavailable as exc:
                log.warning("edge: publish failed for visitor %s: %s", claims.visitor_id, exc)
                await self.send(
                    protocol.error("unavailable", "message not accepted; send it again", client_id=frame.client_id)
                )
                return
            # A duplicate within JetStream's window: it may be stored long ago, so ask PostgreSQL first.
            stored = await asyncio.to_thread(_stored, claims, frame.client_id) if puback.duplicate else None
            try:
                stored = stored or await asyncio.wait_for(asyncio.shield(future), self.limits.ack_timeout_seconds)
            except TimeoutError:
                # The event may have been missed (or JetStream dropped a duplicate): PostgreSQL decides.
                stored = await asyncio.to_thread(_stored, claims, frame.client_id)
                if stored is None:
                    await self.send(
                        protocol.error("not_stored_yet", "no ack yet; send it again", client_id=frame.client_id)
                    )
                    return
            await self.send(protocol.ack(frame.client_id, stored["seq"], stored["conversation_id"]))
        finally:
            self.waiting.pop(frame.client_id, None)

    # -- receiving ------------------------------------------------------------------------------------------

    async def _receive(self) -> None:
        silence = 2 * self.limits.heartbeat_seconds
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), silence)
            except TimeoutError:
                await self.ws.close(CLOSE_SILENT, "no frame for two heartbeat intervals")
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self.send(protocol.error("invalid_frame", "frames must be JSON text"))
                continue
            try:
                frame = protocol.parse_client_frame(text, self.limits)
            except protocol.FrameError as exc:
                await self.send(protocol.error(exc.code, exc.message))
                continue
            if isinstance(frame, protocol.Ping):
                await self.send(protocol.PONG)
            elif isinstance(frame, protocol.Hello):
                await self._hello(frame)
            elif isinstance(frame, protocol.Send):
                if self.delivered is None:
                    await self.send(protocol.error("hello_required", "send hello before messages"))
                elif self.outbox.full():
                    await self.send(
                        protocol.error("outbox_full", "too many unacknowledged messages", client_id=frame.client_id)
                    )
                else:
                    self.outbox.put_nowait(frame)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.limits.heartbeat_seconds)
            await self.send(protocol.PING)

    async def run(self) -> None:
        subscription = await self.hub.subscribe(
            subjects.visitor_events(self.claims.tenant_id, self.claims.visitor_id), self._on_event
        )
        self.hub.sockets.add(self)
        tasks = [asyncio.create_task(t) for t in (self._deliver(), self._send_outbox(), self._heartbeat())]
        try:
            await self._receive()
        except (WebSocketDisconnect, RuntimeError):  # RuntimeError: sending on a socket the client closed
            pass
        finally:
            self.hub.sockets.discard(self)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def visitor_endpoint(ws: WebSocket) -> None:
    config: Settings = ws.app.state.config
    hub: Hub = ws.app.state.hub
    claims = tokens.verify(
        config.secret_key, ws.query_params.get("token", ""), config.limits.visitor_token_days * 86400
    )
    await ws.accept()
    if claims is None:
        await ws.close(CLOSE_BAD_TOKEN, "invalid or expired token")
        return
    site, visitor = await asyncio.to_thread(_load_site_and_visitor, claims)
    if site is None or visitor is None:
        await ws.close(CLOSE_BAD_TOKEN, "unknown visitor")
        return
    if not site.allows_origin(ws.headers.get("origin")):
        await ws.close(CLOSE_BAD_ORIGIN, "origin not allowed")
        return
    try:
        await VisitorSocket(ws, claims, hub, config).run()
    except BusUnavailable:
        await ws.close(CLOSE_TRY_AGAIN, "service unavailable; reconnect shortly")
