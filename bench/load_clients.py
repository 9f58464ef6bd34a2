"""The load harness's clients (bench/load.py): visitors on real WebSockets, agents on the console's real HTTP and
Server-Sent Events, and the record of when each message was sent, acked and seen by the other side.

A visitor speaks docs/protocol.md as widget.js does (session, socket, hello, messages with client_ids, pong, its
own ping after 0.6 of the server's heartbeat without a frame, re-sending its unacked outbox after a reconnect). An agent
logs in, holds `/live/console` open and replies with the composer's POST. Times are time.monotonic() in this
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

# Messages a visitor may have unacked before the scheduler skips it (the edge closes a socket at 500).
MAX_IN_FLIGHT = 50
# A kept-alive HTTP connection is dropped after this long idle: before Hypercorn's keep-alive of 5 s ends, so a
# request never goes out on a connection the server is closing at that moment (httpx's default is also 5 s).
KEEPALIVE_SECONDS = 2.0
# A request whose connection closes under it is sent this many times in all (`post`).
POST_ATTEMPTS = 3
# widget.js's heartbeat: every CHECK_EVERY seconds it pings if it has heard nothing for 0.6 of the server's.
CHECK_EVERY = 4.0


@dataclass
class Sent:
    at: float
    step: int
    visitor: str
    acked_at: float | None = None
    conversation_id: str | None = None
    behind: bool = False  # sent while an earlier message of its visitor was not yet acked


@dataclass
class Record:
    """Everything the clients saw, judged after the run (so a late event still counts)."""

    step: int = 0
    messages: dict[str, Sent] = field(default_factory=dict)  # visitor messages by client_id
    replies: dict[str, Sent] = field(default_factory=dict)  # agent replies by client_id
    reply_seen: dict[str, float] = field(default_factory=dict)  # client_id → the visitor saw it
    conversation_events: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    attention: dict[str, float] = field(default_factory=dict)  # client_id → an agent's console named it
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    throttled: int = 0  # sends skipped: the visitor had MAX_IN_FLIGHT unacked
    retried: int = 0  # requests sent again after their connection closed under them (`post`)

    def error(self, kind: str) -> None:
        self.errors[f"{self.step}:{kind}"] += 1

    def seen_at(self, client_id: str, sent: Sent) -> float | None:
        """When an agent's console was first told of the message. Exactly, from an `attention` event, whose
        preview is the body (a conversation's first message, or one assigned to that agent); otherwise the
        first `conversation` event for its conversation after it was sent, which carries no message: counted
        only for a message sent with none of its visitor's before it unacked, whose event could be taken for
        its own. None: not seen, or not attributable."""
        if client_id in self.attention:
            return self.attention[client_id]
        if sent.conversation_id is None or sent.behind:
            return None
        times = self.conversation_events.get(sent.conversation_id, [])
        i = bisect_right(times, sent.at)
        return times[i] if i < len(times) else None


async def post(record: Record, http: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """POST, sent again when its connection closes under it: a kept-alive connection the server was closing as
    the request went out (seen on a loaded machine), as the widget asks for its session again and the agent
    sends the composer's form again. Both are safe to repeat (a reply carries its client_id, stored once).
    Counted in `record.retried`, apart from errors: nothing was lost and the server did nothing wrong."""
    for _ in range(POST_ATTEMPTS - 1):
        try:
            return await http.post(url, **kwargs)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            record.retried += 1
    return await http.post(url, **kwargs)


class VisitorClient:
    def __init__(self, record: Record, http: httpx.AsyncClient, base_url: str, site_key: str, name: str) -> None:
        self.record, self.http, self.base_url, self.site_key, self.name = record, http, base_url, site_key, name
        self.token: str | None = None
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.last_seq = 0
        self.unacked: dict[str, str] = {}  # client_id → body, in send order
        self.count = 0
        self.welcomed = asyncio.Event()
        self.connected_at: float | None = None
        self.heard_at = 0.0  # loop time of the last frame from the server
        self.ping_after = 12.0  # 0.6 of welcome.heartbeat_seconds

    async def connect(self) -> None:
        """Session, socket, hello; then the outbox again, in order, as widget.js does after a reconnect."""
        response = await post(
            self.record,
            self.http,
            f"{self.base_url}/api/v1/widget/session",
            json={"site_key": self.site_key, "visitor_token": self.token},
        )
        if response.status_code != 200:
            self.record.error(f"session {response.status_code}")
            response.raise_for_status()
        data = response.json()
        self.token = data["visitor_token"]
        self.welcomed.clear()
        ws = await websockets.connect(
            f"{data['ws_url']}?token={self.token}", open_timeout=30, ping_interval=None, max_queue=None
        )
        await ws.send(json.dumps({"type": "hello", "last_seq": self.last_seq}))
        self.reader = asyncio.create_task(self._read(ws))
        await asyncio.wait_for(self.welcomed.wait(), 30)
        # Only now do new messages go on this socket; until now they waited in the outbox, sent here.
        self.ws = ws
        self.connected_at = self.heard_at = asyncio.get_running_loop().time()
        for client_id, body in list(self.unacked.items()):
            await self._send_frame(client_id, body)

    async def close(self) -> None:
        ws, self.ws = self.ws, None  # what is sent from now on waits in the outbox for the next socket
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def reconnect(self) -> None:
        """Connection churn: a visitor leaves the page and comes back (same token, hello with last_seq)."""
        await self.close()
        try:
            await self.connect()
        except Exception as exc:
            self.record.error(f"reconnect {type(exc).__name__}")

    @property
    def in_flight(self) -> int:
        return len(self.unacked)

    async def send_message(self, now: float) -> None:
        client_id = f"{self.name}-{self.count}"
        self.count += 1
        body = f"load {client_id}"
        self.record.messages[client_id] = Sent(now, self.record.step, self.name, behind=bool(self.unacked))
        self.unacked[client_id] = body
        await self._send_frame(client_id, body)

    async def _send_frame(self, client_id: str, body: str) -> None:
        """Send, or leave it in the outbox while there is no socket; a socket the server closed is noticed
        (counted, and replaced) by its reader, which re-sends the outbox."""
        ws = self.ws
        if ws is None:
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(json.dumps({"type": "message", "client_id": client_id, "body": body}))

    async def beat(self, now: float) -> None:
        """widget.js's heartbeat check: a ping when the server has been silent for 0.6 of its heartbeat."""
        ws = self.ws
        if ws is not None and now - self.heard_at > self.ping_after:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send('{"type":"ping"}')

    async def _read(self, ws: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for raw in ws:
                now = self.heard_at = loop.time()
                frame = json.loads(raw)
                kind = frame["type"]
                if kind == "ack":
                    sent = self.record.messages.get(frame["client_id"])
                    if sent is not None and sent.acked_at is None:
                        sent.acked_at, sent.conversation_id = now, frame["conversation_id"]
                    self.unacked.pop(frame["client_id"], None)
                elif kind == "message":
                    self.last_seq = max(self.last_seq, frame["seq"])
                    if frame.get("sender") != "visitor" and frame.get("body", "").startswith("reply "):
                        self.record.reply_seen.setdefault(frame["body"].split()[1], now)
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind == "welcome":
                    self.ping_after = 0.6 * frame.get("heartbeat_seconds", 20)
                    self.welcomed.set()
                elif kind == "error":
                    self.record.error(f"error frame {frame.get('code')}")
                    if frame.get("retry") and frame.get("client_id") in self.unacked:
                        await asyncio.sleep(0.5)
                        await self._send_frame(frame["client_id"], self.unacked[frame["client_id"]])
        except websockets.ConnectionClosed as exc:
            if ws is self.ws:  # not one we closed ourselves
                self.record.error(f"socket closed {exc.rcvd.code if exc.rcvd else ''}")
                self.ws = None
                loop.create_task(self.reconnect())


async def heartbeats(visitors: list[VisitorClient]) -> None:
    """Every visitor's heartbeat check, every CHECK_EVERY seconds, spread over the interval as real pages'
    timers are (not all at once)."""
    loop = asyncio.get_running_loop()
    slices = 40
    while True:
        for i in range(slices):
            for visitor in visitors[i::slices]:
                await visitor.beat(loop.time())
            await asyncio.sleep(CHECK_EVERY / slices)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class AgentClient:
    """An agent in the console: logged in, the live stream open, replying through the composer's POST."""

    def __init__(self, record: Record, base_url: str, email: str, password: str) -> None:
        self.record, self.email, self.password = record, email, password
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30, follow_redirects=True, limits=limits)
        self.csrf = ""
        self.stream: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.conversations: list[str] = []
        self.count = 0

    async def start(self) -> None:
        page = await self.http.get("/login")
        token = CSRF.search(page.text)
        assert token, "no CSRF token on the login page"
        await self.http.post("/login", data={"email": self.email, "password": self.password, "csrf_token": token[1]})
        console = await self.http.get("/console")
        token = CSRF.search(console.text)
        assert console.status_code == 200 and token, f"console not reachable: {console.status_code}"
        self.csrf = token[1]
        self.stream = asyncio.create_task(self._listen())
        await asyncio.wait_for(self.listening.wait(), 30)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        known = set()
        while True:
            try:
                async with self.http.stream("GET", "/live/console", timeout=None) as response:
                    event = None
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "conversation":
                            conversation = line[5:].strip()
                            self.record.conversation_events[conversation].append(loop.time())
                            if conversation not in known:
                                known.add(conversation)
                                self.conversations.append(conversation)
                        elif line.startswith("data:") and event == "attention":
                            preview = json.loads(line[5:]).get("preview", "")
                            if preview.startswith("load "):
                                self.record.attention.setdefault(preview[5:], loop.time())
                        elif line.startswith("data:") and event == "resync":
                            self.listening.set()
            except (httpx.HTTPError, OSError) as exc:
                self.record.error(f"agent stream {type(exc).__name__}")
                await asyncio.sleep(0.5)

    async def reply(self, conversation: str, now: float) -> None:
        client_id = f"{self.email.split('@')[0]}-{self.count}"
        self.count += 1
        self.record.replies[client_id] = sent = Sent(now, self.record.step, self.email)
        sent.conversation_id = conversation
        try:
            response = await post(
                self.record,
                self.http,
                f"/console/c/{conversation}/messages",
                data={"body": f"reply {client_id}", "client_id": client_id, "csrf_token": self.csrf},
                headers={"HX-Request": "true"},
            )
        except httpx.HTTPError as exc:
            self.record.error(f"reply {type(exc).__name__}")
            return
        if response.status_code == 200:
            sent.acked_at = asyncio.get_running_loop().time()
        else:
            self.record.error(f"reply {response.status_code}")

    async def close(self) -> None:
        if self.stream is not None:
            self.stream.cancel()
            with contextlib.suppress(BaseException):
                await self.stream
        await self.http.aclose()
