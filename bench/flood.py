"""A normal visitor's ack latency, unloaded and while the edge is flooded (issue 7, abuse limits).

    .venv/bin/python -m bench.flood [--messages 40]

Starts the Procfile's processes (release, web, worker) on a fresh database (the PostgreSQL server in DATABASE_URL,
else an embedded one) and its own nats-server, with the documented default limits. A visitor from one loopback
address sends `--messages` messages one at a time, each waited for until acked: first with nothing else going on,
then while attackers from other addresses open 1,000 sockets at a time and send pings as fast as their sockets
take them, each attacker moving to a fresh address whenever the edge stops letting its address in (the worst case
for limits kept per address). Prints both latencies and their ratio (the target is at most 2x); docs/benchmarks.md
records them. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from honcho.environ import parse_procfile

from desk.embedded import NatsServer, ensure_database, free_port, start_postgres
from desk.settings import ROOT
from tests.conftest import Stack, wait_ready
from tests.security.test_flood import (
    DEFAULT_SETTINGS,
    ChattingVisitor,
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


async def measure(base_url: str, site_key: str, messages: int) -> dict[str, object]:
    visitor = ChattingVisitor(base_url, site_key, address())
    await visitor.connect()
    await timed(visitor, "warm-up", 5)
    unloaded = await timed(visitor, "unloaded", messages)

    token = (await asyncio.to_thread(new_session, base_url, site_key, address())).json()["visitor_token"]
    stop = asyncio.Event()
    counts = {"sockets tried": 0, "sockets let in": 0, "sockets turned away": 0, "frame floods cut (1008)": 0}

    async def socket_attacker() -> None:
        while not stop.is_set():
            outcomes = await open_sockets(base_url, token, address(), 1000)
            counts["sockets tried"] += len(outcomes)
            counts["sockets let in"] += sum(o.frames == [{"type": "open"}] for o in outcomes)
            counts["sockets turned away"] += sum(o.code == 1013 for o in outcomes)

    async def frame_attacker() -> None:
        while not stop.is_set():
            outcomes = await flood_frames(base_url, token, address(), stop)
            counts["frame floods cut (1008)"] += sum(o.code == 1008 for o in outcomes)

    attackers = [asyncio.create_task(socket_attacker()), asyncio.create_task(frame_attacker())]
    await asyncio.sleep(2)  # the flood under way
    flooded = await timed(visitor, "flooded", messages)
    stop.set()
    await asyncio.gather(*attackers, return_exceptions=True)
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
    for name, value in result["counts"].items():  # type: ignore[attr-defined]
        print(f"{name}: {value}")
    print(f"logs: {base}")


if __name__ == "__main__":
    main()
