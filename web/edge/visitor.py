"""A visitor's WebSocket: `/ws/visitor?token=…` (docs/protocol.md, steps 2-3).

Three tasks per socket: `_receive` reads and validates frames; `_send_outbox` stores the visitor's messages
one at a time (so seq order is send order) through web/edge/thread.py; `_deliver` sends the thread in seq
order with no gap and no duplicate, from NATS events when they line up and from PostgreSQL when they do not.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from desk import protocol
from desk.bus import BusUnavailable
from desk.settings import Settings
from web.edge.hub import Hub
from web.edge.thread import REPLAY_PAGE, Refusal, VisitorLink, authorize

CLOSE_SILENT = 4408
CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later
RESYNC = object()  # a marker on the delivery queue: catch up from PostgreSQL


class VisitorSocket:
    def __init__(self, ws: WebSocket, link: VisitorLink, config: Settings) -> None:
        self.ws, self.link, self.limits = ws, link, config.limits
        link.on_message = self.deliveries_put
        self.delivered: int | None = None  # highest seq sent on this socket; None until `hello`
        self.outbox: asyncio.Queue[protocol.Send] = asyncio.Queue(config.limits.pending_messages)
        self.deliveries: asyncio.Queue[Any] = asyncio.Queue()
        self.send_lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(frame, separators=(",", ":")))

    def deliveries_put(self, stored: dict[str, Any]) -> None:
        self.deliveries.put_nowait(stored)

    def resync(self) -> None:
        """Called by the hub after NATS reconnects: events sent meanwhile are gone, PostgreSQL has them."""
        self.deliveries.put_nowait(RESYNC)

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
            while True:
                page = await self.link.after(self.delivered)
                for stored in page:
                    await self.send(protocol.message(stored))
                    self.delivered = stored["seq"]
                if len(page) < REPLAY_PAGE:
                    break

    async def _hello(self, hello: protocol.Hello) -> None:
        last_seq = await self.link.last_seq()
        await self.send(protocol.welcome(str(self.link.claims.visitor_id), last_seq))
        self.delivered = min(hello.last_seq, last_seq)
        self.resync()

    async def _send_outbox(self) -> None:
        while True:
            answer = await self.link.store(await self.outbox.get())
            await self.send(answer)
            if answer["type"] == "error":
                # Whatever was queued behind a message that must be re-sent is re-sent after it, so that
                # seq order stays send order: refuse it now rather than store it first.
                while not self.outbox.empty():
                    queued = self.outbox.get_nowait()
                    await self.send(protocol.error(answer["code"], answer["message"], queued.client_id))

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
                await self.send(exc.frame())
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

    async def run(self, hub: Hub) -> None:
        await self.link.open()
        hub.sockets.add(self)
        tasks = [asyncio.create_task(t) for t in (self._deliver(), self._send_outbox(), self._heartbeat())]
        try:
            await self._receive()
        except (WebSocketDisconnect, RuntimeError):  # RuntimeError: sending on a socket the client closed
            pass
        finally:
            hub.sockets.discard(self)
            for task in tasks:
                task.cancel()
            await self.link.close()


async def visitor_endpoint(ws: WebSocket) -> None:
    config: Settings = ws.app.state.config
    hub: Hub = ws.app.state.hub
    await ws.accept()
    claims = await authorize(config, ws.query_params.get("token", ""), ws.headers.get("origin"))
    if isinstance(claims, Refusal):
        await ws.close(claims.close_code, claims.reason)
        return
    try:
        await VisitorSocket(ws, VisitorLink(hub, claims, config), config).run(hub)
    except BusUnavailable:
        await ws.close(CLOSE_TRY_AGAIN, "service unavailable; reconnect shortly")
