"""A visitor's WebSocket: `/ws/visitor?token=…` (docs/protocol.md, steps 2-3).

Five tasks per socket: `_receive` reads and validates frames (and passes `typing` on at once; it also spends
the socket's frame budget, web/edge/abuse.py); `_send_outbox` publishes the visitor's messages one at a time (so
seq order is send order) through web/edge/thread.py, and acks each once stored; `_deliver` sends the thread in seq
order with no gap and no duplicate, from NATS events when they line up and from PostgreSQL when they do not,
and the `typing` and `read` frames in the order their events came; `_heartbeat` pings a client silent for a
heartbeat; `_until_cut` closes the socket when its tenant is suspended (web/edge/access.py). When any of them
ends, the socket closes and the client reconnects and catches up. Before any of them, `visitor_endpoint` applies
the per-address limits, then the per-visitor ones (as soon as the token's signature is checked, before any query),
and `run` subscribes to the thread and reads PostgreSQL once (`VisitorLink.admit`: the site, the tenant's status and
where the thread stands, which the first `welcome` tells).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, NamedTuple

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from desk import metrics, protocol
from desk.bus import BusUnavailable
from desk.settings import Settings
from web.edge.abuse import EdgeLimits, Limited, signed_claims
from web.edge.hub import Hub
from web.edge.thread import (
    BAD_TOKEN,
    REPLAY_PAGE,
    SUSPENDED,
    Published,
    Refusal,
    ThreadState,
    VisitorLink,
    follows_on,
)

CLOSE_SILENT = 4408
CLOSE_TOO_MANY_PENDING = 4429
CLOSE_POLICY = 1008  # RFC 6455: the client broke a policy (here: sent frames too fast)
CLOSE_INTERNAL = 1011  # RFC 6455: the server hit an unexpected condition
CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later
CLOSE_RESTARTING = 1012  # RFC 6455: service restart; the client reconnects (to another edge) at once
RESYNC = object()  # a marker on the delivery queue: catch up from PostgreSQL
# After the edge closes a socket, how long it reads and drops what the client still sends, until its close reply
# (`wait_closed`).
CLOSE_WAIT_SECONDS = 5.0
# What may wait on a socket's delivery queue for its first `hello`; beyond that, the hello reads PostgreSQL.
BEFORE_HELLO = 100
# The visitor went away (RuntimeError: Starlette sending on a socket the client closed).
GONE = (WebSocketDisconnect, RuntimeError)
log = logging.getLogger(__name__)


class Signal(NamedTuple):
    """A `typing` or `read` frame on the delivery queue: sent as it is, in turn with the messages."""

    frame: dict[str, Any]


class VisitorSocket:
    def __init__(self, ws: WebSocket, link: VisitorLink, config: Settings, abuse: EdgeLimits) -> None:
        self.ws, self.link, self.limits, self.abuse = ws, link, config.limits, abuse
        self.frame_budget = abuse.frames()
        link.on_message = self._on_stored
        link.on_signal = self._on_signal
        self.delivered: int | None = None  # highest seq sent on this socket; None until `hello`
        self.helloed = asyncio.Event()  # until the first `hello`, what comes for the thread waits on the queue
        self.admitted: ThreadState | None = None  # the thread as read when the socket opened, for the first hello
        self.dropped = False  # something was not queued before the first hello (BEFORE_HELLO)
        self.outbox: asyncio.Queue[protocol.Send] = asyncio.Queue(config.limits.pending_messages)
        self.deliveries: asyncio.Queue[Any] = asyncio.Queue()
        self.send_lock = asyncio.Lock()
        self.leaving = asyncio.Event()  # the edge is draining: accept no more messages on this socket
        self.cut = asyncio.Event()  # the tenant was suspended (web/edge/access.py): close now
        # Published messages waiting for their stored event; with the outbox, at most pending_messages.
        self.in_flight: set[asyncio.Task[None]] = set()
        self.publishing = False
        # client_ids JetStream holds from this socket and the client has no ack for yet (insertion order: oldest
        # first). Sending one again cannot change the order, so it passes a block (_send_outbox).
        self.in_stream: dict[str, None] = {}
        self.heard_at = time.monotonic()  # the last frame from the client

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(frame, separators=(",", ":")))

    def _queue(self, item: Any) -> None:
        if not self.helloed.is_set() and self.deliveries.qsize() >= BEFORE_HELLO:
            self.dropped = True  # a client that holds its hello back holds no more than this
            return
        self.deliveries.put_nowait(item)

    def _on_stored(self, stored: dict[str, Any]) -> None:
        self._queue(stored)

    def _on_signal(self, frame: dict[str, Any]) -> None:
        self._queue(Signal(frame))

    def resync(self) -> None:
        """Called by the hub after NATS reconnects: events sent meanwhile are gone, PostgreSQL has them."""
        self._queue(RESYNC)

    async def _deliver(self) -> None:
        await self.helloed.wait()
        while True:
            item = await self.deliveries.get()
            if isinstance(item, Signal):
                await self.send(item.frame)  # a missed `read` is in the next welcome; `typing` is fleeting
                continue
            if item is not RESYNC and item["seq"] <= self.delivered:
                continue
            if item is not RESYNC and follows_on(self.delivered, [item]):
                await self.send(protocol.message(item))
                self.delivered = item["seq"]
                metrics.MESSAGES_OUT.labels("visitor").inc()
                if item["sender"] != "visitor":  # an agent's reply reaching the visitor, live
                    metrics.ACK_LATENCY.labels("delivered").observe(metrics.age(item["created_at"]))
                continue
            while True:
                page = await self.link.after(self.delivered)
                for stored in page:
                    await self.send(protocol.message(stored))
                    self.delivered = stored["seq"]
                    metrics.MESSAGES_OUT.labels("visitor").inc()
                if len(page) < REPLAY_PAGE:
                    break

    async def _hello(self, hello: protocol.Hello) -> None:
        # The first hello answers from the state read when the socket opened, after it subscribed: what was
        # stored since waits on the queue, so PostgreSQL is read again only for a client that is behind.
        state, first = (self.admitted, True) if self.admitted is not None else (await self.link.state(), False)
        self.admitted = None
        visitor_id, beat = str(self.link.claims.visitor_id), self.limits.heartbeat_seconds
        await self.send(protocol.welcome(visitor_id, state.last_seq, state.read_seq, beat))
        self.delivered = min(hello.last_seq, state.last_seq)
        if not first or self.dropped or self.delivered < state.last_seq:
            self.deliveries.put_nowait(RESYNC)
        self.helloed.set()

    async def _send_outbox(self) -> None:
        """Publish the socket's messages one at a time, in send order, each as soon as JetStream holds the one
        before it (the store worker stores a thread in stream order, so seq order is send order), and answer each
        with its ack when it is stored, while the next ones are on their way."""
        blocked: dict[str, Any] | None = None  # the retry error of a message the client must send again
        while True:
            frame = await self.outbox.get()
            passes = blocked is None or frame.client_id == blocked["client_id"] or frame.client_id in self.in_stream
            if not passes:
                # Sent after a message that must be re-sent (queued, or already on its way when the error
                # left): it is re-sent after that one, so refuse it now rather than store it first. This
                # keeps seq order equal to send order. A message the stream holds already passes: it is the
                # client's oldest (docs/protocol.md, Errors), and refusing it would leave both waiting forever.
                await self.send(protocol.error(blocked["code"], blocked["message"], frame.client_id))
                continue
            self.publishing = True  # neither in the outbox nor in flight: the drain waits for it too
            try:
                published = await self.link.publish(frame)
            finally:
                self.publishing = False
            if isinstance(published, dict):  # not in the stream: nothing after it may be
                if blocked is None or frame.client_id not in self.in_stream:
                    blocked = published
                await self.send(published)
                continue
            if blocked is not None and frame.client_id == blocked["client_id"]:
                blocked = None  # (a message the stream held, sent again, leaves the block to the later one)
            self.in_stream[frame.client_id] = None
            while len(self.in_stream) > self.limits.pending_messages:
                del self.in_stream[next(iter(self.in_stream))]
            task = asyncio.create_task(self._answer(frame, published))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

    async def _answer(self, frame: protocol.Send, published: Published) -> None:
        try:
            answer = await self.link.stored(frame, published)
        except Exception:  # PostgreSQL away while checking: the message is in JetStream; the client sends it again
            log.exception("edge: no ack for visitor %s's message %s", self.link.claims.visitor_id, frame.client_id)
            metrics.ERRORS.labels("edge", "not_stored_yet").inc()
            answer = protocol.error("not_stored_yet", "no ack yet; send it again", client_id=frame.client_id)
        if answer["type"] == "ack":
            self.in_stream.pop(frame.client_id, None)
        with contextlib.suppress(*GONE):
            await self.send(answer)

    async def _receive(self) -> None:
        silence = 2 * self.limits.heartbeat_seconds
        while True:
            try:
                async with asyncio.timeout(silence):  # not wait_for: no task of its own for every frame
                    message = await self.ws.receive()
            except TimeoutError:
                await self.ws.close(CLOSE_SILENT, "no frame for two heartbeat intervals")
                return
            if message["type"] == "websocket.disconnect":
                return
            self.heard_at = time.monotonic()
            text = message.get("text")
            frame: protocol.ClientFrame | None = None
            refused: dict[str, Any] = {}
            try:
                if text is None:
                    raise protocol.FrameError("invalid_frame", "frames must be JSON text")
                frame = protocol.parse_client_frame(text, self.limits)
            except protocol.FrameError as exc:
                refused = exc.frame()
            # Every frame spends the socket's budget but a message taken into the outbox: those are bounded by
            # pending_messages and stored one at a time, and a widget re-sends its whole outbox at once.
            queued = isinstance(frame, protocol.Send) and self.delivered is not None and not self.leaving.is_set()
            if not queued and self.frame_budget is not None and (wait := self.frame_budget.take()):
                await refuse(self.ws, self.abuse.too_many_frames(wait), CLOSE_POLICY, self.send_lock)
                return
            if frame is None:
                await self.send(refused)
                continue
            if isinstance(frame, protocol.Ping):
                await self.send(protocol.PONG)
            elif isinstance(frame, protocol.Typing):
                if self.delivered is not None:  # before hello the conversation is not known yet: ignored
                    await self.link.typing()
            elif isinstance(frame, protocol.Hello):
                await self._hello(frame)
            elif isinstance(frame, protocol.Send):
                if self.leaving.is_set():
                    continue  # not acked, so the client sends it again after reconnecting
                if self.delivered is None:
                    await self.send(protocol.error("hello_required", "send hello before messages"))
                elif self.outbox.qsize() + len(self.in_flight) + self.publishing >= self.limits.pending_messages:
                    # Closing (not refusing this one) keeps order: the client re-sends its outbox in order.
                    over = Limited("pending_messages", "too many unacknowledged messages; reconnect", 1)
                    await refuse(self.ws, over, CLOSE_TOO_MANY_PENDING, self.send_lock)
                    return
                else:
                    self.outbox.put_nowait(frame)

    async def _heartbeat(self) -> None:
        # Only a silent client is pinged: the widget pings first (and any frame shows it is there), so an idle
        # widget costs one round trip per interval, not two (docs/protocol.md, "Heartbeats").
        beat = self.limits.heartbeat_seconds
        while True:
            wait = self.heard_at + beat - time.monotonic()
            if wait <= 0:
                await self.send(protocol.PING)
                wait = beat
            await asyncio.sleep(wait)

    def lose_access(self, tenant_id: uuid.UUID, user_id: uuid.UUID | None, reason: str) -> None:
        if user_id is None and tenant_id == self.link.claims.tenant_id:
            self.cut.set()

    async def _until_cut(self) -> None:
        await self.cut.wait()
        await refuse_unavailable(self.ws, self.send_lock)

    async def going_away(self) -> None:
        """The edge is restarting: finish the messages already taken (their acks go out), then close so that
        the client reconnects; what it sends meanwhile stays in its outbox and is re-sent there."""
        self.leaving.set()
        while self.in_flight or self.publishing or not self.outbox.empty():
            await asyncio.sleep(0.02)
        with contextlib.suppress(*GONE):
            await self.ws.close(CLOSE_RESTARTING, "server restarting; reconnect")

    async def run(self, hub: Hub, origin: str | None) -> None:
        """Until the visitor leaves or any of the socket's tasks fails: then close, and the client reconnects
        and catches up (a socket that only answers pings would look alive and do nothing)."""
        # Subscribed and registered with the hub before PostgreSQL is read: a message stored from then on is on
        # the queue, a suspension from then on is heard, and what came before is in the one read of `admit`.
        await self.link.open()
        hub.sockets.add(self)
        metrics.SOCKETS.labels("visitor_ws").inc()
        tasks: list[asyncio.Task[None]] = []
        try:
            admitted = await self.link.admit(origin)
            if admitted is SUSPENDED:
                await refuse_unavailable(self.ws)
                return
            if isinstance(admitted, Refusal):
                with contextlib.suppress(*GONE):
                    await self.ws.close(admitted.close_code, admitted.reason)
                return
            self.admitted = admitted
            parts = (self._receive(), self._deliver(), self._send_outbox(), self._heartbeat(), self._until_cut())
            tasks = [asyncio.create_task(part) for part in parts]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            error = next((t.exception() for t in done if not t.cancelled() and t.exception()), None)
            if error is not None and not isinstance(error, GONE):
                log.error("edge: closing visitor %s's socket", self.link.claims.visitor_id, exc_info=error)
                metrics.ERRORS.labels("edge", type(error).__name__).inc()
                with contextlib.suppress(*GONE):
                    await self.ws.close(CLOSE_INTERNAL, "server error; reconnect")
        finally:
            hub.sockets.discard(self)
            metrics.SOCKETS.labels("visitor_ws").dec()
            for task in [*tasks, *self.in_flight]:
                task.cancel()
            await asyncio.gather(*tasks, *self.in_flight, return_exceptions=True)
            await self.link.close()


async def wait_closed(ws: WebSocket) -> None:
    """After the edge closed `ws`: read and drop what the client still sends until its close reply comes.

    Hypercorn hands a socket's frames to the app through a queue of 10 and stops reading the connection while it
    is full. A client that went on sending after the close (a flood refused, a widget's outbox) filled it, so its
    close reply was never read: the connection stayed open until the client gave up (20 s for the `websockets`
    library), and the server's task for it until the process ended."""
    if ws.application_state != WebSocketState.DISCONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return  # not closed by the edge, or the client's close already heard (or never accepted)
    with contextlib.suppress(TimeoutError, *GONE):
        async with asyncio.timeout(CLOSE_WAIT_SECONDS):
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass


async def _tell_and_close(
    ws: WebSocket, frame: dict[str, Any], code: int, reason: str, lock: asyncio.Lock | None = None
) -> None:
    with contextlib.suppress(*GONE):
        async with lock or asyncio.Lock():
            await ws.send_text(json.dumps(frame, separators=(",", ":")))
        await ws.close(code, reason[:120])  # a close reason is at most 123 bytes


async def refuse(ws: WebSocket, limited: Limited, code: int, lock: asyncio.Lock | None = None) -> None:
    """Tell the client which limit it went over (an error frame), then close with `code`."""
    await _tell_and_close(ws, limited.frame(), code, limited.message, lock)


async def refuse_unavailable(ws: WebSocket, lock: asyncio.Lock | None = None) -> None:
    """The tenant is suspended (web/edge/access.py): an `unavailable` error frame, then close 1013."""
    frame = protocol.error("unavailable", "this chat is not available at the moment")
    await _tell_and_close(ws, frame, CLOSE_TRY_AGAIN, "service unavailable", lock)


async def turn_away(ws: WebSocket, abuse: EdgeLimits, address: str | None, limited: Limited) -> None:
    """An address over one of its limits: told so in an error frame, with close 1013 and the seconds to wait. One
    that comes back over the same limit before those seconds are up (a widget waits them; a flood does not) gets a
    plain HTTP 429 at the handshake instead: no WebSocket, no frames, the cheapest refusal the edge has."""
    if abuse.was_told(address, limited) and "websocket.http.response" in ws.scope.get("extensions", {}):
        headers = {"Retry-After": str(limited.retry_after)}
        await ws.send_denial_response(JSONResponse(limited.body(), 429, headers=headers))
        return
    abuse.tell(address, limited)
    await ws.accept()
    await refuse(ws, limited, CLOSE_TRY_AGAIN)
    await wait_closed(ws)


async def visitor_endpoint(ws: WebSocket) -> None:
    config: Settings = ws.app.state.config
    hub: Hub = ws.app.state.hub
    abuse: EdgeLimits = ws.app.state.abuse
    # Before anything that costs a query: the address's limits, then the visitor's (web/edge/abuse.py).
    address = ws.client.host if ws.client else None
    limited = abuse.connect(address) or abuse.open_socket(address)
    if limited is not None:
        await turn_away(ws, abuse, address, limited)
        return
    await ws.accept()
    if hub.draining.is_set():
        abuse.close_socket(address)
        await ws.close(CLOSE_RESTARTING, "server restarting; reconnect")
        return
    counted: uuid.UUID | None = None  # the visitor whose open sockets count this one
    try:
        # Checking the signature is CPU only: an attacker with one visitor's token and many addresses is stopped
        # here, before PostgreSQL or NATS hear of it.
        claims = signed_claims(config.secret_key, ws.query_params.get("token", ""), config.limits)
        if claims is None:
            await ws.close(BAD_TOKEN.close_code, BAD_TOKEN.reason)
            return
        limited = abuse.connect_visitor(claims.visitor_id) or abuse.open_visitor_socket(claims.visitor_id)
        if limited is not None:
            await refuse(ws, limited, CLOSE_TRY_AGAIN)
            return
        counted = claims.visitor_id
        try:
            await VisitorSocket(ws, VisitorLink(hub, claims, config), config, abuse).run(hub, ws.headers.get("origin"))
        except BusUnavailable:
            await ws.close(CLOSE_TRY_AGAIN, "service unavailable; reconnect shortly")
    finally:
        await wait_closed(ws)  # still counted against its address until the connection is gone
        abuse.close_socket(address)
        if counted is not None:
            abuse.close_visitor_socket(counted)
