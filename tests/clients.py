"""Clients that speak to the running product the way a widget and an agent's browser do: real HTTP and
WebSocket, recording everything they sent and received (the fault-injection checker reads these records)."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets


def eventually(check: Callable[[], Any], what: str, timeout: float = 40.0) -> Any:
    """Wait until `check()` returns something true (the workers act asynchronously), and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}; last: {result!r}")
        time.sleep(0.1)


def in_process(flask_app: Any) -> Any:
    """The whole ASGI application around `flask_app`, as `web` serves it, to call in this process (its lifespan,
    and so its NATS connection, never starts)."""
    from web.asgi import application
    from web.edge.hub import Hub

    return application(flask_app.config["DESKBELL"], flask_app, Hub(""))


def asgi_post(
    app: Any, url: str, peer: str = "127.0.0.1", base_url: str = "http://localhost", **kwargs: Any
) -> httpx.Response:
    """POST to an application from `in_process`, as from `peer`; `kwargs` as for httpx."""

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return await client.post(url, **kwargs)

    return asyncio.run(post())


def session(base_url: str, site_key: str, token: str | None = None, origin: str | None = None) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return httpx.post(
        f"{base_url}/api/v1/widget/session",
        json={"site_key": site_key, "visitor_token": token, "page": {"url": "https://shop.test/", "title": "Shop"}},
        headers=headers,
        timeout=10,
    )


@dataclass
class Visitor:
    base_url: str
    site_key: str
    token: str | None = None
    visitor_id: str | None = None
    ws: Any = None
    frames: list[dict[str, Any]] = field(default_factory=list)

    async def connect(self, last_seq: int = 0) -> dict[str, Any]:
        response = await asyncio.to_thread(session, self.base_url, self.site_key, self.token)
        response.raise_for_status()
        data = response.json()
        self.token, self.visitor_id = data["visitor_token"], data["visitor_id"]
        self.ws = await websockets.connect(f"{data['ws_url']}?token={self.token}")
        await self.send({"type": "hello", "last_seq": last_seq})
        return await self.expect("welcome")

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def expect(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        """The next frame of this type (pings are answered, other frames are kept in `frames`)."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == "ping":
                await self.send({"type": "pong"})
            if frame["type"] == kind:
                return frame
            if frame["type"] == "error":
                raise AssertionError(f"error frame while waiting for {kind}: {frame}")

    def received(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@dataclass
class Agent:
    """An agent in the console over plain HTTP (the browser tests drive the same pages in Chromium)."""

    base_url: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=10, follow_redirects=True)

    @staticmethod
    def csrf(html: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def login(self, email: str, password: str) -> httpx.Response:
        page = self.client.get("/login")
        return self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": self.csrf(page.text)}
        )

    def conversation_page(self, conversation_id: str) -> str:
        response = self.client.get(f"/console/c/{conversation_id}")
        response.raise_for_status()
        return response.text

    def thread(self, conversation_id: str) -> list[str]:
        """The message bodies the agent sees in the conversation, as text."""
        page = self.conversation_page(conversation_id)
        return [html.unescape(b) for b in re.findall(r'<div class="body">(.*?)</div>', page, re.S)]

    def reply(self, conversation_id: str, body: str, client_id: str | None = None) -> httpx.Response:
        page = self.conversation_page(conversation_id)
        if client_id is None:
            client_id = re.search(r'name="client_id" value="([^"]+)"', page).group(1)
        return self.client.post(
            f"/console/c/{conversation_id}/messages",
            data={"body": body, "client_id": client_id, "csrf_token": self.csrf(page)},
        )

    def csrf_header(self, conversation_id: str | None = None) -> dict[str, str]:
        """The header console.js sends with its own POSTs: the token from the body's hx-headers."""
        page = self.conversation_page(conversation_id) if conversation_id else self.client.get("/console").text
        match = re.search(r"hx-headers='([^']+)'", page)
        assert match, "no hx-headers on the page"
        return json.loads(html.unescape(match.group(1)))

    def set_presence(self, presence: str) -> httpx.Response:
        """The console's presence menu: online, away or offline."""
        return self.client.post("/console/presence", data={"presence": presence}, headers=self.csrf_header())

    def typing(self, conversation_id: str) -> httpx.Response:
        """What console.js posts while the agent types in the composer."""
        return self.client.post(f"/console/c/{conversation_id}/typing", headers=self.csrf_header(conversation_id))

    def mark_read(self, conversation_id: str, seq: int) -> httpx.Response:
        """What console.js posts when the open conversation is visible up to `seq`."""
        return self.client.post(
            f"/console/c/{conversation_id}/read", data={"seq": str(seq)}, headers=self.csrf_header(conversation_id)
        )


class BackgroundLoop:
    """An event loop on its own thread, for async clients in tests where Playwright owns the main thread's loop."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def start_conversation(base_url: str, site_key: str, body: str = "Hello?") -> str:
    """A new visitor says `body` over a real socket; returns the conversation it opened."""

    async def scenario() -> str:
        visitor = Visitor(base_url, site_key)
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "first", "body": body})
        conversation_id = (await visitor.expect("ack"))["conversation_id"]
        await visitor.close()
        return conversation_id

    return asyncio.run(scenario())


def logged_in_agent(base_url: str, tenant: dict[str, Any]) -> Agent:
    """The tenant's first agent, logged in to the console over HTTP."""
    agent = Agent(base_url)
    login = tenant["agents"][0]
    assert agent.login(login["email"], login["password"]).status_code == 200
    return agent


def log_in_page(page: Any, base_url: str, login: dict[str, str]) -> None:
    """Log an agent in through the login form of a Playwright page."""
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(login["email"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Log in").click()


def open_console(page: Any, base_url: str, login: dict[str, str]) -> None:
    """Log in through the form, and wait until the console's scripts have run (they are deferred: the list
    shows before they do)."""
    log_in_page(page, base_url, login)
    page.wait_for_url(f"{base_url}/console", wait_until="load")
