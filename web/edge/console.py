"""The consoles' live stream: `/live/console` as Server-Sent Events for htmx's SSE extension and console.js.

It carries signals, not content: the page fetches what changed from Flask, with cursors it reads from its own
DOM, so a console that missed events catches up by asking again (docs/architecture.md, "The console: inbox,
panes and live updates"). Events, each at most once per burst of NATS events:

- `resync`: anything may have been missed (the stream just subscribed, or NATS reconnected): refresh the list
  and every open pane. A browser whose stream dropped reconnects by itself and gets this first.
- `inbox`: a conversation list may have changed: the page re-fetches its list.
- `conversation` (data: its id): a conversation's messages, events or header changed: its pane, if open,
  fetches its timeline after its cursors, and its header.
- `typing` (data: JSON visitor_id, conversation_id): a visitor is typing.
- `presence`: an agent's presence changed: the roster re-fetches.
- `attention` (data: JSON): a visitor's message that opened a conversation, or that came in one assigned to
  this agent; attention.js rings when the tab is hidden.
- `revoked` (data: why: deactivated, signed_out, suspended, deleted): the agent's access was taken away
  (web/edge/access.py); the stream ends after it, and reconnecting is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from nats.aio.msg import Msg
from sqlalchemy import select
from sse_starlette import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from desk import accounts, domains, signals, subjects
from desk.bus import BusUnavailable
from desk.db import system_session, tenant_session
from desk.models import Tenant, User
from desk.queries.inbox import alert_facts
from web.edge.hub import Hub

QUEUE_LIMIT = 1000
# The consoles' queries run on threads of their own: with many agents they would otherwise queue ahead of the
# visitor sockets' reads on the event loop's default executor (requests.md, load → edge).
CONSOLE_THREADS = ThreadPoolExecutor(4, thread_name_prefix="console")
RESYNC = {"kind": "resync"}
REVOKED = {"kind": "revoked"}
PREVIEW_CHARS = 120


def _user_from_cookie(flask_app: Flask, cookie: str | None) -> User | None:
    """The console's user from Flask's signed session cookie (flask-login keeps the id as `_user_id`)."""
    if not cookie:
        return None
    serializer = flask_app.session_interface.get_signing_serializer(flask_app)  # type: ignore[attr-defined]
    try:
        data = serializer.loads(cookie, max_age=int(flask_app.permanent_session_lifetime.total_seconds()))
        user_id = uuid.UUID(data["_user_id"])
    except Exception:
        return None
    with system_session() as session:
        found = session.execute(
            select(User, Tenant.status).join(Tenant, Tenant.id == User.tenant_id).where(User.id == user_id)
        ).first()
    if found is None:
        return None
    user, status = found
    if not user.is_active or not accounts.session_is_current(user, data) or status == "suspended":
        return None  # deactivated, signed out everywhere since this session began, or the tenant is suspended
    return user


def _on_another_domain(user: User, host: str | None) -> bool:
    """SaaS: is this request's host another tenant's domain? (On no tenant's domain, any tenant's people may.)"""
    with system_session() as session:
        here = domains.tenant_for_host(session, host)
    return here is not None and here != user.tenant_id


def _alert(
    user: User, message: dict[str, Any], assignee_id: str | None, name: str | None, new: bool
) -> dict[str, Any] | None:
    mine = assignee_id == str(user.id)
    if not (new or mine):
        return None
    return {
        "conversation_id": message["conversation_id"],
        "new": new,
        "mine": mine,
        "name": name or "A visitor",
        "preview": message["body"][:PREVIEW_CHARS],
    }


def alerts(user: User, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The visitor messages worth a sound and a notification for this agent: the first of a conversation, or
    any in a conversation assigned to them; decided from the facts the store worker put in the event."""
    facts = ((e["message"], e["alert"]) for e in events)
    found = (_alert(user, m, a.get("assignee_id"), a.get("name"), bool(a.get("new"))) for m, a in facts)
    return [a for a in found if a is not None]


def _queried_alerts(user: User, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`alerts` for events without the facts (published by a worker older than this edge, during a rolling
    upgrade): one small query per message."""
    found = []
    with tenant_session(user.tenant_id) as session:
        for e in events:
            m = e["message"]
            facts = session.execute(
                alert_facts(uuid.UUID(m["conversation_id"]), uuid.UUID(m["visitor_id"]), m["seq"])
            ).first()
            if facts is not None:
                assignee_id, name, opened = facts
                found.append(_alert(user, m, str(assignee_id) if assignee_id else None, name, bool(opened)))
    return [a for a in found if a is not None]


def signals_for(batch: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The SSE events (name, data) that one burst of agent events makes, without the attention ones."""
    out: list[tuple[str, str]] = []
    kinds = [item.get("kind") for item in batch]
    if RESYNC in batch:
        out.append(("resync", ""))
    elif any(k not in (signals.TYPING, signals.PRESENCE) for k in kinds):
        out.append(("inbox", ""))  # a visitor typing or an agent's presence changes no list
    changed = dict.fromkeys(
        item.get("message", item).get("conversation_id")
        for item in batch
        if item.get("kind") not in (signals.TYPING, signals.PRESENCE)
    )
    out += [("conversation", str(c)) for c in changed if c]
    typing = dict.fromkeys(
        (item.get("visitor_id"), item.get("conversation_id")) for item in batch if item.get("kind") == signals.TYPING
    )
    out += [("typing", json.dumps({"visitor_id": v, "conversation_id": c})) for v, c in typing]
    if signals.PRESENCE in kinds:
        out.append(("presence", ""))
    return out


async def console_stream(request: Request) -> Response:
    flask_app: Flask = request.app.state.flask
    hub: Hub = request.app.state.hub
    user = await asyncio.to_thread(
        _user_from_cookie, flask_app, request.cookies.get(flask_app.config["SESSION_COOKIE_NAME"])
    )
    if user is None:
        return JSONResponse({"error": "unauthorized", "message": "log in first"}, status_code=401)
    if request.app.state.config.deployment_mode == "saas" and await asyncio.to_thread(
        _on_another_domain, user, request.headers.get("host")
    ):
        return JSONResponse({"error": "wrong_domain", "message": "this is another company's address"}, 403)

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
    overflow = asyncio.Event()
    revoked: list[str] = []  # why this person's access was taken away, once it is

    async def on_event(msg: Msg) -> None:
        try:
            queue.put_nowait(json.loads(msg.data))
        except asyncio.QueueFull:
            overflow.set()  # too slow: end the stream; the browser reconnects and catches up

    class Resync:
        def resync(self) -> None:  # NATS reconnected: events may be lost, so the page re-reads PostgreSQL
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(RESYNC)

        def lose_access(self, tenant_id: uuid.UUID, user_id: uuid.UUID | None, reason: str) -> None:
            if tenant_id == user.tenant_id and user_id in (None, user.id) and not revoked:
                revoked.append(reason)
                try:
                    queue.put_nowait(REVOKED)  # wakes the stream, which says why and ends
                except asyncio.QueueFull:
                    overflow.set()

    resync = Resync()
    try:
        hub.client()  # refuse now, while a status code can still say so
    except BusUnavailable:
        return JSONResponse({"error": "unavailable", "message": "live updates are unavailable; retrying"}, 503)

    async def events() -> AsyncIterator[dict[str, Any] | bytes]:
        # Subscribed here, inside the try, so every way out of the stream (a HEAD request never starts
        # it; a client may leave before the first event) also unsubscribes.
        subscription = None
        hub.sockets.add(resync)
        try:
            subscription = await hub.subscribe(subjects.agent_events(user.tenant_id), on_event)
            # Subscribed: whatever the page fetches from now on misses nothing, so it catches up now.
            yield {"event": "resync", "data": ""}
            while not overflow.is_set():
                batch = [await queue.get()]
                while not queue.empty():  # coalesce a burst into one refresh of each thing
                    batch.append(queue.get_nowait())
                if revoked:
                    yield {"event": "revoked", "data": revoked[0]}
                    return
                out = signals_for(batch)
                from_visitors = [
                    i for i in batch if i.get("kind") == "message" and i["message"]["sender"] == "visitor"
                ]
                found = alerts(user, [i for i in from_visitors if "alert" in i])
                if any("alert" not in i for i in from_visitors):
                    older = [i for i in from_visitors if "alert" not in i]
                    loop = asyncio.get_running_loop()
                    found += await loop.run_in_executor(CONSOLE_THREADS, _queried_alerts, user, older)
                out += [("attention", json.dumps(alert)) for alert in found]
                # One write for the burst: each event sent apart cost its own trip through Hypercorn, and with
                # every console hearing every visitor message that was a large part of the edge's CPU.
                if out:
                    yield b"".join(ServerSentEvent(data, event=name).encode() for name, data in out)
        finally:
            hub.sockets.discard(resync)
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    return EventSourceResponse(events(), ping=15)
