"""A normal visitor's ack latency, unloaded and while the edge is flooded (issue 7, abuse limits).

    .venv/bin/python -m bench.flood [--messages 40]

Starts the Procfile's processes (release, web, worker) on a fresh database (the PostgreSQL server in DATABASE_URL,
else an embedded one) and its own nats-server, with the documented default limits. A visitor from one loopback
address sends `--messages` messages one at a time, each waited for until acked: first with nothing else going on,
then while attackers from other addresses open 1,000 sockets at a time and send pings as fast as their sockets
take them, each attacker moving to a fresh address whenever the edge stops letting its address in (the worst case
for limits kept per address), all with one visitor's token (which the per-visitor limits stop whatever the
address). Prints both latencies and their ratio (the target is at most 2x), and how many sockets each limit turned
away, per address or per visitor; docs/benchmarks.md records them. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from honcho.environ import parse_procfile

from desk.embedded import NatsServer, ensure_database, free_port, start_postgres
from desk.settings import ROOT
from tests.conftest import Stack, wait_ready
from tests.security.test_flood import (
    DEFAULT_SETTINGS,
    DOOR_LIMITS,
    ChattingVisitor,
    Outcome,
    address,
    flood_frames,
    new_session,
    open_sockets,
)


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    median, top = statistics.median(ordered), ordered[-1]
    return f"median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {top * 1000:.1f} ms"


async def timed(visitor: ChattingVisitor, label: str, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        await visitor.say(f"{label} #{i}")
        latencies.append(time.perf_counter() - started)
    return latencies


def stopped_by(limit: str) -> str:
    """A counter's name for what a limit turned away: per address or per visitor."""
    return f"per {'visitor' if 'visitor' in limit else 'address'} ({limit})"


async def attack(base_url: str, site_key: str, stop: asyncio.Event) -> dict[str, int]:
    """The two attackers, until `stop`: one opens 1,000 sockets at a time, one floods pings; each takes a fresh
    address whenever its own is no longer let in. Both use one visitor's token (one session), as a script would;
    the counts say which limit turned their sockets away, per address or per visitor."""
    token = (await asyncio.to_thread(new_session, base_url, site_key, address())).json()["visitor_token"]
    counts = {"sockets tried": 0, "sockets let in": 0}
    counts |= {f"sockets turned away {stopped_by(limit)}": 0 for limit in DOOR_LIMITS}
    counts |= {"sockets refused at the handshake (HTTP 429)": 0, "frame floods cut (1008)": 0}
    counts |= {f"frame floods' reconnects turned away {stopped_by(limit)}": 0 for limit in DOOR_LIMITS}

    def turned_away(outcomes: list[Outcome], what: str) -> None:
        for outcome in outcomes:
            if outcome.code == 1013 and outcome.limit in DOOR_LIMITS:
                counts[f"{what} turned away {stopped_by(outcome.limit)}"] += 1
            elif outcome.code == 429:  # back before the seconds it was told: refused at the handshake
                key = f"{what} refused at the handshake (HTTP 429)"
                counts[key] = counts.get(key, 0) + 1

    async def socket_attacker() -> None:
        while not stop.is_set():
            outcomes = await open_sockets(base_url, token, address(), 1000)
            counts["sockets tried"] += len(outcomes)
            counts["sockets let in"] += sum(o.frames == [{"type": "open"}] for o in outcomes)
            turned_away(outcomes, "sockets")

    async def frame_attacker() -> None:
        while not stop.is_set():
            outcomes = await flood_frames(base_url, token, address(), stop)
            counts["frame floods cut (1008)"] += sum(o.code == 1008 for o in outcomes)
            turned_away(outcomes, "frame floods' reconnects")

    await asyncio.gather(socket_attacker(), frame_attacker())
    return counts


def attacker_process(base_url: str, site_key: str, stop: Any, results: Any) -> None:
    """In a process of its own, as attackers are other machines: their CPU is not the measured visitor's."""

    async def run() -> dict[str, int]:
        stopping = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.1)
            stopping.set()

        watcher = asyncio.create_task(watch())
        counts = await attack(base_url, site_key, stopping)
        watcher.cancel()
        return counts

    results.put(asyncio.run(run()))


async def measure(base_url: str, site_key: str, messages: int) -> dict[str, Any]:
    visitor = ChattingVisitor(base_url, site_key, address())
    await visitor.connect()
    await timed(visitor, "warm-up", 5)
    unloaded = await timed(visitor, "unloaded", messages)

    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this event loop
    stop, results = spawn.Event(), spawn.Queue()
    attacker = spawn.Process(target=attacker_process, args=(base_url, site_key, stop, results))
    attacker.start()
    await asyncio.sleep(3)  # the flood under way
    flooded = await timed(visitor, "flooded", messages)
    stop.set()
    counts = await asyncio.to_thread(results.get, True, 120)
    attacker.join(30)
    await visitor.ws.close()
    return {"unloaded": unloaded, "flooded": flooded, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=40, help="messages timed unloaded, and again flooded")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="deskbell-flood-"))
    server = os.environ.get("DATABASE_URL") or start_postgres(base / "pg", database="postgres")
    nats = NatsServer(base / "nats").start()
    port = free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=ensure_database(server, f"deskbell_flood_{secrets.token_hex(3)}"),
        NATS_URL=nats.url,
        PORT=str(port),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DESKBELL_DATA=str(base / "data"),
        SECRET_KEY=secrets.token_urlsafe(24),
        PYTHONUNBUFFERED="1",
        **DEFAULT_SETTINGS,
    )
    procfile = parse_procfile((ROOT / "Procfile").read_text()).processes
    subprocess.run(procfile["release"], shell=True, env=env, cwd=ROOT, check=True)
    stack = Stack(base_url=f"http://127.0.0.1:{port}", env=env, log_dir=base)
    stack.start("web", procfile["web"])
    stack.start("worker", procfile["worker"])
    try:
        wait_ready(stack.base_url, timeout=60)
        tenant = stack.bootstrap("ada")
        result = asyncio.run(measure(stack.base_url, str(tenant["site_key"]), args.messages))
    finally:
        for name in list(stack.processes):
            stack.stop(name)
        nats.stop()
    unloaded, flooded = result["unloaded"], result["flooded"]
    assert isinstance(unloaded, list) and isinstance(flooded, list)
    print(f"ack latency, unloaded ({len(unloaded)} messages): {summary(unloaded)}")
    print(f"ack latency, flooded  ({len(flooded)} messages): {summary(flooded)}")
    print(f"ratio of medians: {statistics.median(flooded) / statistics.median(unloaded):.2f}x (target <= 2x)")
    for name, value in result["counts"].items():
        print(f"{name}: {value}")
    print(f"logs: {base}")


if __name__ == "__main__":
    main()
