"""A visitor's thread as the edge sees it, whatever the transport (WebSocket or long-polling).

`VisitorLink` subscribes to the thread's events and stores the visitor's messages: it publishes each to
JetStream and answers `ack` only once PostgreSQL has it (docs/architecture.md, steps 2-5). It also passes on
typing and read signals, which are not stored as messages (docs/architecture.md, "Typing and read receipts").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy import bindparam, select

from desk import bus, metrics, protocol, signals, subjects, tokens
from desk.actions.messages import Inbound, as_event
from desk.bus import BusUnavailable, publish_durable
from desk.db import tenant_session
from desk.models import Site, Tenant, origin_allowed
from desk.queries.conversations import message_by_client_id, thread_after, thread_state, thread_state_columns
from desk.settings import Settings
from web.edge.hub import Hub

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
# A socket passes on at most one visitor `typing` frame per this many seconds; the rest are dropped.
TYPING_INTERVAL = 1.0


def follows_on(delivered: int, stored: list[dict[str, Any]]) -> bool:
    """Do these stored messages (in seq order) continue a thread delivered up to `delivered`, with no gap?
    When they do, the connection sends them as they came; when not, it reads PostgreSQL instead."""
    return all(m["seq"] == delivered + i for i, m in enumerate(stored, 1))


@dataclass(frozen=True)
class Published:
    """A visitor's message JetStream holds; `future` gets its stored event."""

    started: float
    duplicate: bool
    future: asyncio.Future[dict[str, Any]]


@dataclass(frozen=True)
class Refusal:
    """Why a visitor may not connect: a WebSocket close code, an HTTP status and a message."""

    close_code: int
    status: int
    reason: str


BAD_TOKEN = Refusal(4401, 401, "invalid or expired token")
UNKNOWN_VISITOR = Refusal(4401, 401, "unknown visitor")
BAD_ORIGIN = Refusal(4403, 403, "origin not allowed")
# The tenant was suspended (or is being deleted): told with an `unavailable` error frame before the close.
SUSPENDED = Refusal(1013, 403, "service unavailable")


def _thread_after(claims: tokens.VisitorClaims, after: int) -> list[dict[str, Any]]:
    with tenant_session(claims.tenant_id) as session:
        return [as_event(m) for m in session.scalars(thread_after(claims.visitor_id, after, REPLAY_PAGE))]


@dataclass(frozen=True)
class ThreadState:
    """What `welcome` says about the thread, and the conversation a visitor's typing belongs to."""

    last_seq: int
    read_seq: int
    conversation_id: str | None

    @classmethod
    def of(cls, last_seq: int | None, conversation_id: Any, read_seq: int | None) -> ThreadState:
        """From `thread_state`'s three columns, in their order."""
        return cls(last_seq or 0, read_seq or 0, str(conversation_id) if conversation_id else None)


def _thread_state(claims: tokens.VisitorClaims) -> ThreadState:
    with tenant_session(claims.tenant_id) as session:
        return ThreadState.of(*session.execute(thread_state(claims.visitor_id)).one())


# A new socket's one read (a storm of connections is issue 10), built once and run in Core on the tenant
# session's connection: the ORM's execution of it (its compile state, the tenant criteria, a Site object) cost
# twice the CPU of the rest of the transaction. So it names the tenant itself, in every table it reads, as the ORM
# criteria would (row-level security holds it too, desk/db.py).
_VISITOR, _SITE, _TENANT = bindparam("visitor_id"), bindparam("site_id"), bindparam("tenant_id")
_ADMISSION = (
    select(Site.allowed_origins, Tenant.status, *thread_state_columns(_VISITOR, _TENANT))
    .join(Tenant, Tenant.id == Site.tenant_id)
    .where(Site.id == _SITE, Site.tenant_id == _TENANT)
)


def _admission(claims: tokens.VisitorClaims, origin: str | None) -> ThreadState | Refusal:
    """All a new connection reads of PostgreSQL, in one statement: the token's site (its allowed origins), the
    tenant's status, and the visitor's thread as `welcome` tells it."""
    ids = {"visitor_id": claims.visitor_id, "site_id": claims.site_id, "tenant_id": claims.tenant_id}
    with tenant_session(claims.tenant_id) as session:
        found = session.connection().execute(_ADMISSION, ids).first()
    if found is None:
        return UNKNOWN_VISITOR
    allowed_origins, status, last_seq, conversation_id, read_seq = found
    if last_seq is None:  # no such visitor
        return UNKNOWN_VISITOR
    if not origin_allowed(allowed_origins, origin):
        return BAD_ORIGIN
    if status != "active":
        return SUSPENDED
    return ThreadState.of(last_seq, conversation_id, read_seq)


def _stored(claims: tokens.VisitorClaims, client_id: str) -> dict[str, Any] | None:
    with tenant_session(claims.tenant_id) as session:
        message = session.scalar(message_by_client_id(claims.visitor_id, client_id))
        return as_event(message) if message else None


class VisitorLink:
    """One connection's view of a visitor thread; `on_message` hears every stored message of the thread,
    `on_signal` every `typing` and `read` frame for the visitor."""

    def __init__(
        self,
        hub: Hub,
        claims: tokens.VisitorClaims,
        config: Settings,
        on_message: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    ) -> None:
        self.hub, self.claims, self.limits = hub, claims, config.limits
        self.on_message = on_message
        self.on_signal: Callable[[dict[str, Any]], None] | None = None
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.subscription: Subscription | None = None
        self.conversation_id: str | None = None  # the visitor's open conversation, as last heard
        self._typing_at = float("-inf")

    async def open(self) -> None:
        """Subscribe before reading PostgreSQL, so nothing stored in between is missed."""
        self.subscription = await self.hub.subscribe(
            subjects.visitor_events(self.claims.tenant_id, self.claims.visitor_id), self._on_event
        )

    async def admit(self, origin: str | None) -> ThreadState | Refusal:
        """After `open`: may this connection go on (`_admission`), and where its thread stands if so."""
        admitted = await asyncio.to_thread(_admission, self.claims, origin)
        if isinstance(admitted, ThreadState):
            self.conversation_id = admitted.conversation_id or self.conversation_id
        return admitted

    async def close(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()

    async def _on_event(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        kind = event.get("kind")
        if kind in signals.VISITOR_SIGNALS:  # typing, read, queue
            if self.on_signal is not None:
                self.on_signal(protocol.signal_frame(event))
            return
        if kind != "message":
            return
        stored = event["message"]
        self.conversation_id = stored["conversation_id"]
        future = self.waiting.get(stored["client_id"]) if stored["sender"] == "visitor" else None
        if future is not None and not future.done():
            future.set_result(stored)
        if self.on_message is not None:
            result = self.on_message(stored)
            if result is not None:
                await result

    async def after(self, seq: int) -> list[dict[str, Any]]:
        """Up to REPLAY_PAGE stored messages with seq > `seq`, in order, from PostgreSQL."""
        return await asyncio.to_thread(_thread_after, self.claims, seq)

    async def state(self) -> ThreadState:
        state = await asyncio.to_thread(_thread_state, self.claims)
        self.conversation_id = state.conversation_id or self.conversation_id
        return state

    async def typing(self) -> None:
        """Tell the consoles the visitor is typing: a plain event, at most one per TYPING_INTERVAL, and never
        an error (a lost one only hides the indicator for a moment)."""
        now = asyncio.get_running_loop().time()
        if now - self._typing_at < TYPING_INTERVAL:
            return
        self._typing_at = now
        event = signals.visitor_typing(self.claims.visitor_id, self.conversation_id)
        try:
            await self.hub.client().publish(subjects.agent_events(self.claims.tenant_id), bus.encode(event))
        except Exception as exc:  # nats-py raises several kinds while disconnected
            log.info("edge: typing event for visitor %s not sent: %s", self.claims.visitor_id, exc)

    async def store(self, frame: protocol.Send) -> dict[str, Any]:
        """Publish a visitor's message and return its `ack` once stored, or an error frame to retry on."""
        published = await self.publish(frame)
        return published if isinstance(published, dict) else await self.stored(frame, published)

    async def publish(self, frame: protocol.Send) -> Published | dict[str, Any]:
        """Hand a visitor's message to JetStream; once this returns, the stream holds it behind every message
        published before it (so its seq comes after theirs), or an error frame says it may not."""
        claims = self.claims
        started = time.monotonic()
        future = self.waiting.setdefault(frame.client_id, asyncio.get_running_loop().create_future())
        inbound = Inbound(visitor_id=claims.visitor_id, client_id=frame.client_id, body=frame.body)
        try:
            puback = await publish_durable(
                self.hub.client(),
                subjects.inbound(claims.tenant_id, claims.visitor_id),
                inbound.payload(),
                subjects.inbound_msg_id(claims.visitor_id, frame.client_id),
            )
        except BusUnavailable as exc:
            self.waiting.pop(frame.client_id, None)
            log.warning("edge: publish failed for visitor %s: %s", claims.visitor_id, exc)
            metrics.ERRORS.labels("edge", "unavailable").inc()
            return protocol.error("unavailable", "message not accepted; send it again", client_id=frame.client_id)
        metrics.ACK_LATENCY.labels("published").observe(metrics.since(started))
        metrics.MESSAGES_IN.labels("visitor").inc()
        return Published(started, puback.duplicate, future)

    async def stored(self, frame: protocol.Send, published: Published) -> dict[str, Any]:
        """The `ack` of a published message once PostgreSQL has it, or an error frame to retry on."""
        claims = self.claims
        try:
            # A duplicate within JetStream's window may have been stored long ago: ask PostgreSQL first.
            stored = await asyncio.to_thread(_stored, claims, frame.client_id) if published.duplicate else None
            try:
                stored = stored or await asyncio.wait_for(
                    asyncio.shield(published.future), self.limits.ack_timeout_seconds
                )
            except TimeoutError:
                # The event may have been missed: PostgreSQL decides.
                stored = await asyncio.to_thread(_stored, claims, frame.client_id)
                if stored is None:
                    metrics.ERRORS.labels("edge", "not_stored_yet").inc()
                    return protocol.error("not_stored_yet", "no ack yet; send it again", client_id=frame.client_id)
            self.conversation_id = stored["conversation_id"]
            self._typing_at = float("-inf")  # typing after a message is a new burst: pass its first on
            metrics.ACK_LATENCY.labels("acked").observe(metrics.since(published.started))
            return protocol.ack(frame.client_id, stored["seq"], stored["conversation_id"])
        finally:
            if self.waiting.get(frame.client_id) is published.future:
                self.waiting.pop(frame.client_id, None)
