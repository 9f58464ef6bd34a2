"""Long-polling for visitors whose network blocks WebSockets: the same frames, the same guarantees.

`GET /lp/visitor?token=…&last_seq=N` answers `{"frames": [welcome, message…]}` with the thread after N,
at once if there is any (or with `wait=0`), else when the next message is stored, an agent types or reads
(`typing` and `read` frames follow the messages), or after the poll timeout.
`POST /lp/visitor?token=…` takes `{"frames": [...]}` (message, typing and ping frames) and answers their
acks, errors and pongs, storing messages one at a time; at most one `typing` per request is passed on.
Each request stands alone, so any edge process can serve any poll (docs/protocol.md). Bodies are sent as
text/plain so that a cross-origin widget needs no CORS preflight.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from desk import protocol
from desk.bus import BusUnavailable
from desk.settings import Settings
from web.edge import access
from web.edge.abuse import EdgeLimits, Limited, capped_body, signed_claims
from web.edge.hub import Hub
from web.edge.thread import BAD_TOKEN, SUSPENDED, Refusal, ThreadState, VisitorLink


def _reply(request: Request, payload: dict[str, Any], status: int = 200) -> Response:
    response = JSONResponse(payload, status)
    origin = request.headers.get("origin")
    if origin and status != 403:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def _too_many(request: Request, limited: Limited) -> Response:
    """429 naming the limit, with `Retry-After` (which a cross-origin widget may read)."""
    response = _reply(request, limited.body(), 429)
    response.headers["Retry-After"] = str(limited.retry_after)
    response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    return response


def _refused(request: Request, refusal: Refusal) -> Response:
    if refusal is SUSPENDED:  # as the widget's session request says
        unavailable = {"error": "tenant_suspended", "message": "this chat is not available at the moment"}
        return _reply(request, unavailable, 403)
    return _reply(request, {"error": "refused", "code": refusal.close_code, "message": refusal.reason}, refusal.status)


async def _link(request: Request) -> tuple[VisitorLink, ThreadState] | Response:
    """The request's visitor, subscribed to its thread, and where the thread stands; or the refusal."""
    config: Settings = request.app.state.config
    hub: Hub = request.app.state.hub
    abuse: EdgeLimits = request.app.state.abuse
    # Each request counts as a new connection of its address, then of the visitor its token names (whatever the
    # address: the signature is checked on the CPU), before any query (web/edge/abuse.py).
    claims = signed_claims(config.secret_key, request.query_params.get("token", ""), config.limits)
    limited = abuse.connect(request.client.host if request.client else None)
    if limited is None and claims is not None:
        limited = abuse.connect_visitor(claims.visitor_id)
    if limited is not None:
        return _too_many(request, limited)
    if claims is None:
        return _refused(request, BAD_TOKEN)
    link = VisitorLink(hub, claims, config)
    try:
        await link.open()
    except BusUnavailable:
        await link.close()
        return _reply(request, {"error": "unavailable", "message": "service unavailable; retry shortly"}, 503)
    try:
        admitted = await link.admit(request.headers.get("origin"))
    except BaseException:  # PostgreSQL away, or the client left: the subscription goes with the request
        await link.close()
        raise
    if isinstance(admitted, Refusal):
        await link.close()
        return _refused(request, admitted)
    return link, admitted


def _too_many_frames(frames: list[Any], config: Settings) -> Limited | None:
    """A request stands for one socket's worth of frames (docs/protocol.md, "Abuse limits"): at most `frame_burst`
    frames besides messages, and at most `pending_messages` messages."""
    limits = config.limits
    messages = sum(isinstance(f, dict) and f.get("type") == "message" for f in frames)
    if limits.frames_per_second > 0 and len(frames) - messages > max(1, limits.frame_burst):
        return Limited("frames_per_second", f"at most {limits.frame_burst} frames besides messages in one request", 1)
    if messages > limits.pending_messages:
        return Limited("pending_messages", f"at most {limits.pending_messages} messages in one request", 1)
    return None


async def poll(request: Request) -> Response:
    config: Settings = request.app.state.config
    try:
        last_seq = int(request.query_params.get("last_seq", "0"))
        if last_seq < 0:
            raise ValueError
    except ValueError:
        return _reply(request, {"error": "invalid_last_seq", "message": "last_seq must be a non-negative integer"}, 400)
    linked = await _link(request)
    if isinstance(linked, Response):
        return linked
    link, state = linked
    stored_event = asyncio.Event()
    heard: list[dict[str, Any]] = []  # typing and read frames heard while waiting

    def on_signal(frame: dict[str, Any]) -> None:
        heard.append(frame)
        stored_event.set()

    link.on_message = lambda _stored: stored_event.set()
    link.on_signal = on_signal
    try:
        last_seq = min(last_seq, state.last_seq)  # as hello does: a client ahead of the thread gets all of it
        frames: list[dict[str, Any]] = [protocol.welcome(str(link.claims.visitor_id), state.last_seq, state.read_seq)]
        messages = await link.after(last_seq)
        if not messages and request.query_params.get("wait") != "0":
            hub: Hub = request.app.state.hub
            waiting_poll = _WaitingPoll(link, stored_event)
            hub.sockets.add(waiting_poll)
            waits = [asyncio.ensure_future(e.wait()) for e in (stored_event, hub.draining)]
            # A draining edge answers at once: the next poll goes to an edge that stays.
            try:
                if await asyncio.to_thread(access.suspended, link.claims.tenant_id):
                    waiting_poll.lose_access(link.claims.tenant_id, None, "suspended")  # before it could hear
                await asyncio.wait(waits, timeout=config.limits.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                hub.sockets.discard(waiting_poll)
                for waiting in waits:
                    waiting.cancel()
            if waiting_poll.cut:
                heard.append(protocol.error("unavailable", "this chat is not available at the moment"))
            messages = await link.after(last_seq)
        frames += [protocol.message(m) for m in messages] + heard
        return _reply(request, {"frames": frames})
    finally:
        await link.close()


class _WaitingPoll:
    """A long-poll waiting for news, as the hub sees it: answered at once after NATS reconnects (events may have
    been missed) or when the visitor's tenant is suspended (web/edge/access.py)."""

    def __init__(self, link: VisitorLink, wake: asyncio.Event) -> None:
        self.link, self.wake, self.cut = link, wake, False

    def resync(self) -> None:
        self.wake.set()

    def lose_access(self, tenant_id: uuid.UUID, user_id: uuid.UUID | None, reason: str) -> None:
        if user_id is None and tenant_id == self.link.claims.tenant_id:
            self.cut = True
            self.wake.set()


async def send(request: Request) -> Response:
    config: Settings = request.app.state.config
    cap = config.limits.frame_bytes * 10
    body = await capped_body(request, cap)
    if body is None:
        return _reply(request, {"error": "too_large", "message": f"a request carries at most {cap} bytes"}, 413)
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
            raise ValueError
    except ValueError:
        return _reply(request, {"error": "invalid_json", "message": 'body must be {"frames": [...]}'}, 400)
    over = _too_many_frames(data["frames"], config)
    if over is not None:  # refused whole, before anything is stored: the client sends them again, fewer at a time
        return _too_many(request, over)
    linked = await _link(request)
    if isinstance(linked, Response):
        return linked
    link, _ = linked
    answers: list[dict[str, Any]] = []
    failed: dict[str, Any] | None = None
    try:
        for raw in data["frames"]:
            try:
                frame = protocol.parse_client_frame(json.dumps(raw, ensure_ascii=False), config.limits)
            except protocol.FrameError as exc:
                answers.append(exc.frame())
                continue
            if isinstance(frame, protocol.Ping):
                answers.append(protocol.PONG)
            elif isinstance(frame, protocol.Typing):
                if link.conversation_id is None:
                    await link.state()  # each request stands alone: learn the conversation once
                await link.typing()  # the link's own limit: one per request
            elif isinstance(frame, protocol.Send):
                if failed is not None:  # keep send order: what follows a message to re-send is re-sent too
                    answers.append(protocol.error(failed["code"], failed["message"], frame.client_id))
                    continue
                answer = await link.store(frame)
                failed = answer if answer["type"] == "error" else None
                answers.append(answer)
        return _reply(request, {"frames": answers})
    finally:
        await link.close()
