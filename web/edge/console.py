"""The consoles' live stream: `/live/console` as Server-Sent Events for htmx's SSE extension.

Events: `inbox` (the conversation list changed: the page re-fetches it), `message` (an HTML fragment for
the open conversation, `id:` = its seq) and `typing` (the open conversation's visitor is typing: a fragment
that console.js clears after 4 s). A browser that reconnects sends Last-Event-ID and gets what it
missed from PostgreSQL, so the stream survives drops without a reload (docs/architecture.md, step 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from flask import Flask, g, render_template
from nats.aio.msg import Msg
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from desk import signals, subjects
from desk.actions.messages import as_event
from desk.bus import BusUnavailable
from desk.db import system_session, tenant_session
from desk.models import Conversation, User
from desk.queries import conversations as q
from web.edge.hub import Hub
from web.edge.thread import follows_on

QUEUE_LIMIT = 1000
RESYNC = {"kind": "resync"}


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
        user = session.get(User, user_id)
    return user if user is not None and user.is_active else None


def _catch_up(tenant_id: uuid.UUID, conversation_id: uuid.UUID, after_seq: int) -> list[dict[str, Any]]:
    with tenant_session(tenant_id) as session:
        return [as_event(m) for m in session.scalars(q.conversation_thread(conversation_id, after_seq))]


def _visitor_of(tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> str | None:
    with tenant_session(tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        return str(conversation.visitor_id) if conversation else None


def render_typing(flask_app: Flask) -> str:
    with flask_app.app_context():
        return render_template("agent/_typing.html")


def render_message(flask_app: Flask, event: dict[str, Any], host_url: str = "") -> str:
    with flask_app.app_context():
        g.host_url = host_url  # for links to attachments on this host (web/__init__.py, message_body)
        return render_template("agent/_message.html", m=SimpleNamespace(**event, author_name=event["author"]))


async def console_stream(request: Request) -> Response:
    flask_app: Flask = request.app.state.flask
    hub: Hub = request.app.state.hub
    user = await asyncio.to_thread(
        _user_from_cookie, flask_app, request.cookies.get(flask_app.config["SESSION_COOKIE_NAME"])
    )
    if user is None:
        return JSONResponse({"error": "unauthorized", "message": "log in first"}, status_code=401)
    try:
        conversation = (
            uuid.UUID(request.query_params["conversation"]) if "conversation" in request.query_params else None
        )
        after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
    except ValueError:
        return JSONResponse({"error": "bad_request", "message": "conversation or after is malformed"}, 400)

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
    overflow = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        try:
            queue.put_nowait(json.loads(msg.data))
        except asyncio.QueueFull:
            overflow.set()  # too slow: end the stream; the browser reconnects and catches up

    class Resync:
        def resync(self) -> None:  # NATS reconnected: events may be lost, so re-read PostgreSQL
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(RESYNC)

    resync = Resync()
    try:
        hub.client()  # refuse now, while a status code can still say so
    except BusUnavailable:
        return JSONResponse({"error": "unavailable", "message": "live updates are unavailable; retrying"}, 503)
    # Typing events name the visitor (before a first message there is no conversation yet).
    typing_visitor = await asyncio.to_thread(_visitor_of, user.tenant_id, conversation) if conversation else None

    async def thread_events(live: list[dict[str, Any]] | None) -> AsyncIterator[dict[str, Any]]:
        """The open conversation's new messages: from events when they follow on, else from PostgreSQL."""
        nonlocal after
        if conversation is None:
            return
        if live is not None:
            live = sorted(
                (m for m in live if m["conversation_id"] == str(conversation) and m["seq"] > after),
                key=lambda m: m["seq"],
            )
            if not live:
                return
        if live is None or not follows_on(after, live):
            live = await asyncio.to_thread(_catch_up, user.tenant_id, conversation, after)
        for message in live:
            after = message["seq"]
            yield {
                "event": "message",
                "id": str(after),
                "data": render_message(flask_app, message, str(request.base_url)),
            }

    async def events() -> AsyncIterator[dict[str, Any]]:
        # Subscribed here, inside the try, so every way out of the stream (a HEAD request never starts
        # it; a client may leave before the first event) also unsubscribes.
        subscription = None
        hub.sockets.add(resync)
        try:
            subscription = await hub.subscribe(subjects.agent_events(user.tenant_id), on_event)
            yield {"event": "inbox", "data": ""}
            async for event in thread_events(None):
                yield event
            while not overflow.is_set():
                batch = [await queue.get()]
                while not queue.empty():  # coalesce a burst into one inbox refresh
                    batch.append(queue.get_nowait())
                typing = [i for i in batch if i.get("kind") == signals.TYPING]
                changes = [i for i in batch if i.get("kind") != signals.TYPING]
                if changes:  # a visitor typing changes no list: no refresh for it
                    yield {"event": "inbox", "data": ""}
                    live = None if RESYNC in changes else [i["message"] for i in changes if i.get("kind") == "message"]
                    async for event in thread_events(live):
                        yield event
                if typing_visitor is not None and any(i.get("visitor_id") == typing_visitor for i in typing):
                    yield {"event": "typing", "data": render_typing(flask_app)}
        finally:
            hub.sockets.discard(resync)
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    return EventSourceResponse(events(), ping=15)
