"""The peer (issue 10): a minimal chat relay on python-socketio, what a Python team would otherwise build, served
by Hypercorn as Deskbell's edge is, under the same load as bench/load.py for relay latency and connection memory.

    .venv/bin/python -m bench.peer_socketio --rates 50,100 --seconds 10 --visitors 100 --idle 1000
    .venv/bin/python -m bench.peer_socketio serve --port 8100      # the relay alone

It stores nothing: a visitor's `message` is acked at once and relayed to the agents' room; an agent's `reply` is
relayed to its visitor. So its latencies are a floor for a relay in Python, not a like-for-like with Deskbell's
stored acks. The clients speak Engine.IO 4 / Socket.IO 5 frames over the same `websockets` package as the
harness's visitors, so the client side costs the same. Needs the `bench` extra (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import websockets

from bench.load import STORM_CONCURRENCY, Options, parse_options
from bench.load_report import ProcessGroup, Usage, percentiles, this_process
from desk.embedded import free_port, wait_for_port
from desk.settings import ROOT

HEARTBEAT_SECONDS = 20  # as Deskbell's DESKBELL_HEARTBEAT_SECONDS default


def app() -> Any:
    import socketio  # the bench extra: only the peer needs it

    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=HEARTBEAT_SECONDS, cors_allowed_origins="*")

    @sio.on("join_agents")
    async def join_agents(sid: str, _: Any = None) -> dict[str, bool]:
        await sio.enter_room(sid, "agents")
        return {"ok": True}

    @sio.on("message")
    async def message(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.emit("message", {**data, "visitor": sid}, room="agents")
        return {"ack": data["client_id"]}

    @sio.on("reply")
    async def reply(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.emit("message", data, to=data["visitor"])
        return {"ack": data["client_id"]}

    return socketio.ASGIApp(sio)


async def serve(port: int) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    await hypercorn_serve(app(), config)  # type: ignore[arg-type]


@contextmanager
def running_peer() -> Iterator[tuple[str, ProcessGroup]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.peer_socketio", "serve", "--port", str(port)], cwd=ROOT, start_new_session=True
    )
    try:
        wait_for_port(port)
        yield f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", ProcessGroup("peer", process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


class Client:
    """One Socket.IO connection: emits with acks, answers Engine.IO pings, records arrivals."""

    def __init__(self, url: str, on_event: Any) -> None:
        self.url, self.on_event = url, on_event
        self.ws: Any = None
        self.sid = ""
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.next_ack = 0
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url, open_timeout=30, ping_interval=None, max_queue=None)
        assert (await self.ws.recv()).startswith("0")  # Engine.IO open
        await self.ws.send("40")  # Socket.IO connect to "/"
        reply = await self.ws.recv()
        assert reply.startswith("40"), reply
        self.sid = json.loads(reply[2:])["sid"]
        self.reader = asyncio.create_task(self._read())

    async def emit(self, event: str, data: Any) -> Any:
        self.next_ack += 1
        future = self.acks[self.next_ack] = asyncio.get_running_loop().create_future()
        await self.ws.send(f"42{self.next_ack}" + json.dumps([event, data]))
        return await future

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                if frame == "2":
                    await self.ws.send("3")
                elif frame.startswith("43"):
                    body = frame[2:]
                    split = body.index("[")
                    future = self.acks.pop(int(body[:split]), None)
                    if future is not None and not future.done():
                        future.set_result(json.loads(body[split:]))
                elif frame.startswith("42"):
                    self.on_event(loop.time(), json.loads(frame[2:]))

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()


async def _limited(limit: asyncio.Semaphore, work: Any) -> Any:
    async with limit:
        return await work


async def run_peer_load(url: str, peer: ProcessGroup, o: Options) -> dict[str, Any]:
    """The steps of bench/load.py against the relay: same visitors, rates, replies and idle sockets (no churn:
    a reconnect is a new sid, and the relay keeps no thread to resume)."""
    loop = asyncio.get_running_loop()
    sent: dict[str, tuple[int, float]] = {}
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    visitors_seen: list[str] = []

    def on_agent_event(now: float, event: list[Any]) -> None:
        data = event[1]
        seen.setdefault(data["client_id"], now)
        visitors_seen.append(data["visitor"])

    def on_visitor_event(now: float, event: list[Any]) -> None:
        seen.setdefault(event[1]["client_id"], now)

    visitors = [Client(url, on_visitor_event) for _ in range(o.visitors)]
    agents = [Client(url, on_agent_event) for _ in range(o.agents)]
    for a in agents:
        await a.connect()
        await a.emit("join_agents", {})
    limit = asyncio.Semaphore(STORM_CONCURRENCY)  # connects at once, as bench/load.py's storms
    began = time.monotonic()
    await asyncio.gather(*(_limited(limit, v.connect()) for v in visitors))
    storm = time.monotonic() - began

    async def send(client: Client, event: str, data: dict[str, Any], step: int, at: float) -> None:
        sent[data["client_id"]] = (step, at)
        await client.emit(event, data)
        acked[data["client_id"]] = loop.time()

    steps = []
    usage = Usage([peer, this_process()])
    n = 0
    for step, rate in enumerate(o.rates):
        usage.start(time.monotonic())
        end = loop.time() + o.seconds
        next_send, next_reply = loop.time(), loop.time()
        while True:
            next_send += random.expovariate(rate)
            while o.reply_rate > 0 and next_reply < next_send and visitors_seen:
                next_reply += random.expovariate(o.reply_rate)
                cid = f"r{n}"
                n += 1
                data = {"client_id": cid, "visitor": random.choice(visitors_seen), "body": f"reply {cid}"}
                loop.create_task(send(random.choice(agents), "reply", data, step, loop.time()))
            if next_send >= end:
                break
            await asyncio.sleep(max(0.0, next_send - loop.time()))
            cid = f"m{n}"
            n += 1
            data = {"client_id": cid, "body": f"load {cid}"}
            loop.create_task(send(random.choice(visitors), "message", data, step, loop.time()))
        steps.append((step, rate, usage.stop(time.monotonic())))
    await asyncio.sleep(2)  # the last ones arrive

    def of(step: int, prefix: str, times: dict[str, float]) -> list[float]:
        return [times[c] - at for c, (s, at) in sent.items() if s == step and c[0] == prefix and c in times]

    results = [
        {
            "offered_per_s": rate,
            "sent": sum(1 for c, (s, _) in sent.items() if s == step and c[0] == "m"),
            "acked_per_s": round(len(of(step, "m", acked)) / o.seconds, 1),
            "ack_ms": percentiles(of(step, "m", acked)),
            "seen_ms": percentiles(of(step, "m", seen)),
            "reply_seen_ms": percentiles(of(step, "r", seen)),
            "errors": {},
            "usage": u,
        }
        for step, rate, u in steps
    ]
    idle = None
    if o.idle:
        before = peer.rss_bytes()
        extra = [Client(url, lambda *_: None) for _ in range(o.idle)]
        began = time.monotonic()
        outcomes = await asyncio.gather(*(_limited(limit, c.connect()) for c in extra), return_exceptions=True)
        storm_seconds = time.monotonic() - began
        usage = Usage([peer])
        usage.start(time.monotonic())
        await asyncio.sleep(o.idle_seconds)
        used = usage.stop(time.monotonic())
        after = peer.rss_bytes()
        failed = sum(isinstance(x, BaseException) for x in outcomes)
        idle = {
            "sockets": o.idle,
            "storm_seconds": round(storm_seconds, 2),
            "failed": failed,
            "failures": sorted({repr(x)[:120] for x in outcomes if isinstance(x, BaseException)})[:3],
            "rss_per_socket_kib": round((after - before) / 1024 / max(1, o.idle - failed), 1),
            "peer_cpu_percent": used["peer"]["cpu_percent"],
            "seconds": o.idle_seconds,
        }
        for c in extra:
            await c.close()
    for c in visitors + agents:
        await c.close()
    lost = sum(1 for c in sent if c not in seen)
    return {"storm": {"visitors": o.visitors, "seconds": round(storm, 2)}, "steps": results, "not_seen": lost,
            "idle": idle}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options, _ = parse_options(argv)
    with running_peer() as (url, group):
        figures = asyncio.run(run_peer_load(url, group, options))
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl+C (asyncio cancels the run), so the stack's processes are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if sys.argv[1:2] == ["serve"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("serve")
        parser.add_argument("--port", type=int, required=True)
        asyncio.run(serve(parser.parse_args().port))
    else:
        main()
