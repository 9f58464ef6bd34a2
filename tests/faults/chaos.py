"""Simulated visitors and agents that keep chatting through faults, and the checker that judges them.

In the style of NATS's chaos tests: every client records what it sent, what was acked and what it received;
`check()` compares those records with PostgreSQL once every client has reconnected and flushed its outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import psycopg
import websockets

from desk import subjects
from tests.conftest import wait_ready
from tests.faults.stack import FaultStack

# A socket that has heard nothing (not even a ping) for this long is dead: reconnect.
SILENCE_SECONDS = 5.0
WINDOW = 8  # messages a visitor may have unacked at once
CATCH_UP_SECONDS = 60.0  # how long the final reconnection keeps trying (a slow machine is still recovering)


@dataclass
class VisitorView:
    name: str
    token: str | None = None
    visitor_id: str | None = None
    sent: list[str] = field(default_factory=list)  # client_ids, in send order
    unacked: OrderedDict[str, str] = field(default_factory=OrderedDict)
    acks: dict[str, int] = field(default_factory=dict)
    conversations: set[str] = field(default_factory=set)
    received: list[int] = field(default_factory=list)  # seqs of message frames, across every connection
    duplicate_acks: int = 0
    connects: int = 0
    ack_latency: list[float] = field(default_factory=list)
    first_sent_at: dict[str, float] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)
    caught_up_at: list[float] = field(default_factory=list)  # each (re)connection: welcome's thread replayed

    @property
    def last_seq(self) -> int:
        return self.received[-1] if self.received else 0


class Visitor:
    def __init__(self, view: VisitorView, base_url: str, site_key: str, total: int, interval: float) -> None:
        self.view, self.base_url, self.site_key = view, base_url, site_key
        self.total, self.interval = total, interval
        self.stop_sending = False
        # After a retry error (docs/protocol.md, "Errors"): re-send only the oldest unacked message until it is
        # acked, then the rest of the outbox in order; send nothing new meanwhile.
        self.recovering = False

    async def _session(self) -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(
                f"{self.base_url}/api/v1/widget/session",
                json={"site_key": self.site_key, "visitor_token": self.view.token},
            )
            response.raise_for_status()
            data = response.json()
        self.view.token, self.view.visitor_id = data["visitor_token"], data["visitor_id"]
        return f"{data['ws_url']}?token={data['visitor_token']}"

    def done(self) -> bool:
        return (self.stop_sending or len(self.view.sent) >= self.total) and not self.view.unacked

    async def run(self, deadline: float) -> None:
        while not self.done() and time.monotonic() < deadline:
            try:
                await self._connection()
            except (OSError, httpx.HTTPError, websockets.WebSocketException, TimeoutError):
                await asyncio.sleep(random.uniform(0.2, 1.0))

    async def _connection(self) -> None:
        url = await self._session()
        async with websockets.connect(url, open_timeout=5, close_timeout=1, ping_interval=None) as ws:
            self.view.connects += 1
            self.recovering = False  # a new socket has nothing refused on it
            await ws.send(json.dumps({"type": "hello", "last_seq": self.view.last_seq}))
            reader = asyncio.create_task(self._read(ws))
            try:
                for client_id, body in list(self.view.unacked.items()):  # the outbox, re-sent as it was
                    await ws.send(json.dumps({"type": "message", "client_id": client_id, "body": body}))
                while not self.done() and not reader.done():
                    if (
                        not self.recovering
                        and not self.stop_sending
                        and len(self.view.sent) < self.total
                        and len(self.view.unacked) < WINDOW
                    ):
                        client_id = f"{self.view.name}-{len(self.view.sent)}"
                        body = f"message {len(self.view.sent)} from {self.view.name}"
                        self.view.sent.append(client_id)
                        self.view.unacked[client_id] = body
                        self.view.first_sent_at[client_id] = time.monotonic()
                        await ws.send(json.dumps({"type": "message", "client_id": client_id, "body": body}))
                    await asyncio.sleep(self.interval)
                if reader.done():
                    reader.result()  # raise what ended it
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

    async def catch_up(self) -> None:
        """Reconnect once more with hello(last_seq) and read to the thread's end: the client's final view. As the
        widget does, it tries again after a failed attempt (a slow machine can still be catching up)."""
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while True:
            try:
                return await self._read_to_the_end()
            except (OSError, httpx.HTTPError, websockets.WebSocketException, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    async def _read_to_the_end(self) -> None:
        async with websockets.connect(await self._session()) as ws:
            await ws.send(json.dumps({"type": "hello", "last_seq": self.view.last_seq}))
            target = None
            while target is None or self.view.last_seq < target:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] == "welcome":
                    target = frame["last_seq"]
                elif frame["type"] == "message":
                    self.view.received.append(frame["seq"])

    async def _read(self, ws: Any) -> None:
        view = self.view
        target: int | None = None
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), SILENCE_SECONDS))
            kind = frame["type"]
            if kind == "welcome":
                target = frame["last_seq"]
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif kind == "message":
                view.received.append(frame["seq"])
            if target is not None and view.last_seq >= target:
                view.caught_up_at.append(time.monotonic())
                target = None
            elif kind == "ack":
                client_id = frame["client_id"]
                if client_id in view.acks:
                    view.duplicate_acks += view.acks[client_id] != frame["seq"]
                else:
                    view.acked_at[client_id] = time.monotonic()
                    view.ack_latency.append(view.acked_at[client_id] - view.first_sent_at[client_id])
                view.acks[client_id] = frame["seq"]
                view.conversations.add(frame["conversation_id"])
                view.unacked.pop(client_id, None)
                if self.recovering:  # the oldest is stored: now the rest, in order
                    self.recovering = False
                    for queued, body in list(view.unacked.items()):
                        await ws.send(json.dumps({"type": "message", "client_id": queued, "body": body}))
            elif kind == "error" and frame.get("retry") and view.unacked:
                head = next(iter(view.unacked))
                if not self.recovering or frame.get("client_id") == head:
                    self.recovering = True
                    await asyncio.sleep(0.5)
                    if head in view.unacked:
                        await ws.send(json.dumps({"type": "message", "client_id": head, "body": view.unacked[head]}))


@dataclass
class AgentView:
    email: str
    sent: list[str] = field(default_factory=list)  # form client_ids, each retried until accepted
    retries: int = 0


class Agent:
    """An agent answering in the console over HTTP; a failed POST is retried with the same client_id."""

    def __init__(self, view: AgentView, password: str, base_url: str, visitors: list[VisitorView]) -> None:
        self.view, self.password, self.base_url, self.visitors = view, password, base_url, visitors
        self.stop = False

    async def run(self, interval: float) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10, follow_redirects=True) as client:
            while not self.stop:
                try:
                    page = await client.get("/login")
                    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                    await client.post(
                        "/login", data={"email": self.view.email, "password": self.password, "csrf_token": token}
                    )
                    break
                except (httpx.HTTPError, AttributeError):
                    await asyncio.sleep(0.5)
            n = 0
            while not self.stop:
                await asyncio.sleep(interval)
                candidates = [c for v in self.visitors for c in v.conversations]
                if not candidates:
                    continue
                conversation = random.choice(candidates)
                client_id = f"{self.view.email.split('@')[0]}-{n}"
                n += 1
                self.view.sent.append(client_id)
                await self._reply(client, conversation, client_id, f"reply {client_id}")

    async def _reply(self, client: httpx.AsyncClient, conversation: str, client_id: str, body: str) -> None:
        token = None
        while True:
            try:
                if token is None:
                    page = await client.get(f"/console/c/{conversation}")
                    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                response = await client.post(
                    f"/console/c/{conversation}/messages",
                    data={"body": body, "client_id": client_id, "csrf_token": token},
                )
                if response.status_code == 200:
                    return
            except (httpx.HTTPError, AttributeError):
                pass
            self.view.retries += 1
            await asyncio.sleep(0.5)


def _first_difference(a: list[str], b: list[str]) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"position {i}: {a[i : i + 3]} where {b[i : i + 3]} was sent"


def check(database_url: str, visitors: list[VisitorView], agents: list[AgentView]) -> dict[str, Any]:
    """Every promise, judged from the clients' records and PostgreSQL. Returns figures; raises on a breach."""
    problems: list[str] = []
    with psycopg.connect(database_url) as conn:
        for view in visitors:
            rows = conn.execute(
                "SELECT seq, client_id, sender FROM messages WHERE visitor_id = %s ORDER BY seq", (view.visitor_id,)
            ).fetchall()
            seqs = [r[0] for r in rows]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"{view.name}: stored seqs have gaps: {seqs[:5]}…")
            stored = [r[1] for r in rows if r[2] == "visitor"]
            if sorted(stored) != sorted(view.sent):
                missing = set(view.sent) - set(stored)
                extra = [c for c in stored if stored.count(c) > 1] + sorted(set(stored) - set(view.sent))
                problems.append(f"{view.name}: missing {sorted(missing)[:5]}, duplicated or unknown {extra[:5]}")
            elif stored != view.sent:
                problems.append(f"{view.name}: stored out of send order from {_first_difference(stored, view.sent)}")
            by_client = {r[1]: r[0] for r in rows}
            for client_id, seq in view.acks.items():
                if by_client.get(client_id) != seq:
                    problems.append(
                        f"{view.name}: acked {client_id} as seq {seq}, stored as {by_client.get(client_id)}"
                    )
            if set(view.acks) != set(view.sent):
                problems.append(f"{view.name}: {len(set(view.sent) - set(view.acks))} messages never acked")
            if view.received != seqs:
                problems.append(
                    f"{view.name}: received {len(view.received)} frames, not the thread 1..{len(seqs)} once in order"
                )
            if view.duplicate_acks:
                problems.append(f"{view.name}: {view.duplicate_acks} acks disagreed about a seq")
        agent_rows = conn.execute("SELECT client_id FROM messages WHERE sender = 'agent'").fetchall()
        stored_agent = [r[0].removeprefix("agent:") for r in agent_rows]
        for agent in agents:
            for client_id in agent.sent:
                if stored_agent.count(client_id) != 1:
                    problems.append(f"agent reply {client_id} stored {stored_agent.count(client_id)} times")
    assert not problems, "\n".join(problems[:40])
    latencies = sorted(x for v in visitors for x in v.ack_latency)
    return {
        "visitor_messages": sum(len(v.sent) for v in visitors),
        "agent_replies": sum(len(a.sent) for a in agents),
        "reconnects": sum(v.connects - 1 for v in visitors),
        "agent_retries": sum(a.retries for a in agents),
        "ack_p50_ms": round(1000 * latencies[len(latencies) // 2]) if latencies else None,
        "ack_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)]) if latencies else None,
    }


# -- faults and a run that goes through them -------------------------------------------------------------------


def faults(stack: FaultStack) -> dict[str, Callable[[], None]]:
    """Every fault the suite injects, by name; each blocks until the part is back."""

    def kill_restart(name: str) -> Callable[[], None]:
        def act() -> None:
            stack.kill(name)
            time.sleep(3)
            stack.start(name)

        return act

    def restart_nats() -> None:
        stack.nats.stop(kill=True)
        time.sleep(3)
        stack.nats.start()

    def restart_postgres() -> None:
        stack.postgres.kill()
        time.sleep(3)
        stack.postgres.start()

    def pause_worker() -> None:
        stack.processes.send_signal("worker2", signal.SIGSTOP)
        time.sleep(subjects.ACK_WAIT_SECONDS + 5)
        stack.processes.send_signal("worker2", signal.SIGCONT)

    def blackhole(name: str) -> Callable[[], None]:
        def act() -> None:
            stack.proxies[name].set("blackhole")
            time.sleep(10)
            stack.proxies[name].set("pass")

        return act

    def rolling_restart() -> None:
        """What an upgrade does: SIGTERM each process in turn and start it again once the last is back."""
        for name in ("web1", "web2", "worker1", "worker2"):
            stack.processes.stop(name)  # SIGTERM, then wait until the process has gone
            stack.start(name)
            if name.startswith("web"):
                wait_ready(f"http://127.0.0.1:{stack.envs[name]['PORT']}")
            else:
                time.sleep(2)

    actions = {
        "rolling restart of every process": rolling_restart,
        "kill -9 edge web1, restart after 3 s": kill_restart("web1"),
        "kill -9 worker1, restart after 3 s": kill_restart("worker1"),
        "kill -9 nats-server, restart after 3 s": restart_nats,
        "kill -9 PostgreSQL, restart after 3 s": restart_postgres,
        "SIGSTOP worker2 for ack wait + 5 s": pause_worker,
    }
    for hop in ("client_edge", "edge_nats", "worker_nats", "worker_pg"):
        actions[f"blackhole {hop} for 10 s"] = blackhole(hop)
    return actions


async def stream_drained(url: str, timeout: float) -> None:
    """Wait until every message published to DESK_IN is stored (a work queue keeps only unacked ones)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while (await js.stream_info(subjects.IN_STREAM)).state.messages:
            assert time.monotonic() < deadline, "DESK_IN still has messages waiting to be stored"
            await asyncio.sleep(0.5)
    finally:
        await nc.close()


async def chat_through_faults(
    stack: FaultStack,
    tenant: dict[str, Any],
    visitors: int,
    interval: float,
    steps: list[tuple[str, float]],
    min_messages: int,
    log: list[str],
) -> tuple[list[VisitorView], list[AgentView]]:
    """Visitors and agents chat while `steps` (fault name, seconds to settle after it) run in order; then
    everyone stops sending, flushes and catches up. Returns the records for check()."""
    actions = faults(stack)
    views = [VisitorView(f"v{i:03d}") for i in range(visitors)]
    agent_views = [AgentView(a["email"]) for a in tenant["agents"]]
    deadline = time.monotonic() + 3600
    clients = [Visitor(v, stack.base_url, tenant["site_key"], 10**9, interval) for v in views]
    agents = [
        Agent(view, login["password"], stack.base_url, views)
        for view, login in zip(agent_views, tenant["agents"], strict=True)
    ]
    visitor_tasks = [asyncio.create_task(c.run(deadline)) for c in clients]
    agent_tasks = [asyncio.create_task(a.run(interval=1.0)) for a in agents]
    began = time.monotonic()
    for name, settle in steps:
        started = time.monotonic()
        await asyncio.to_thread(actions.get(name, lambda: None))
        await asyncio.sleep(settle)
        sent = sum(len(v.sent) for v in views)
        log.append(f"{started - began:6.1f} s  {name}: {time.monotonic() - started:.1f} s, {sent} sent so far")
    while sum(len(v.sent) for v in views) < min_messages:
        await asyncio.sleep(1)
    for c in clients:
        c.stop_sending = True
    for a in agents:
        a.stop = True
    await asyncio.wait_for(asyncio.gather(*agent_tasks), 120)
    await asyncio.wait_for(asyncio.gather(*visitor_tasks), 300)  # each flushes its outbox, then ends
    await stream_drained(stack.nats.url, 300)
    await asyncio.gather(*(c.catch_up() for c in clients))
    return views, agent_views
