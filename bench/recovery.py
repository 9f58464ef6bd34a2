"""Recovery times after faults (issue 3), on the real processes of tests/faults/stack.py.

    .venv/bin/python -m bench.recovery [--visitors 100]

1. An edge is killed with SIGKILL: how long until each of its visitors is reconnected and caught up
   (welcome received and the thread replayed), through the load-balancing proxy to the other edge.
2. A worker is killed with SIGKILL: how long until every message in flight at that moment is stored (acked).
3. PostgreSQL is down for 30 s while messages keep arriving (published to JetStream at a fixed rate, as the
   edges do): how long the backlog took to build, and how long to drain after PostgreSQL is back.
Prints the figures; docs/reliability.md records them. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import nats

from desk import bus, subjects
from desk.actions.messages import Inbound
from tests.faults.chaos import Visitor, VisitorView
from tests.faults.stack import FaultStack, running_fault_stack


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def edge_kill(stack: FaultStack, site_key: str, n: int) -> dict[str, float]:
    views = [VisitorView(f"e{i}") for i in range(n)]
    visitors = [Visitor(v, stack.base_url, site_key, 10_000, 2.0) for v in views]
    tasks = [asyncio.create_task(v.run(time.monotonic() + 120)) for v in visitors]
    await asyncio.sleep(8)
    killed_at = time.monotonic()
    await asyncio.to_thread(stack.kill, "web1")
    await asyncio.sleep(20)
    times = [
        next(t for t in v.caught_up_at if t > killed_at) - killed_at
        for v in views
        if any(t > killed_at for t in v.caught_up_at)
    ]
    for v in visitors:
        v.stop_sending = True
    await asyncio.gather(*tasks)
    await asyncio.to_thread(stack.start, "web1")
    return {
        "visitors": n,
        "on_killed_edge": len(times),
        "p50_s": percentile(times, 0.5),
        "p95_s": percentile(times, 0.95),
        "max_s": max(times, default=float("nan")),
    }


async def worker_kill(stack: FaultStack, site_key: str, n: int) -> dict[str, float]:
    views = [VisitorView(f"w{i}") for i in range(n)]
    visitors = [Visitor(v, stack.base_url, site_key, 10_000, 0.2) for v in views]
    tasks = [asyncio.create_task(v.run(time.monotonic() + 120)) for v in visitors]
    await asyncio.sleep(6)
    killed_at = time.monotonic()
    in_flight = [(v, cid) for v in views for cid in list(v.unacked)]
    await asyncio.to_thread(stack.kill, "worker1")
    await asyncio.sleep(15)
    for v in visitors:
        v.stop_sending = True
    await asyncio.gather(*tasks)
    await asyncio.to_thread(stack.start, "worker1")
    waits = [v.acked_at[cid] - killed_at for v, cid in in_flight if cid in v.acked_at]
    return {
        "in_flight": len(in_flight),
        "stored": len(waits),
        "p95_s": percentile(waits, 0.95),
        "max_s": max(waits, default=float("nan")),
    }


async def postgres_outage(stack: FaultStack, site_key: str, rate: float, outage: float) -> dict[str, float]:
    """Publish as the edges do, at `rate` per second, through an outage; watch the consumer's backlog."""
    async with httpx.AsyncClient() as client:
        sessions = [
            (await client.post(f"{stack.base_url}/api/v1/widget/session", json={"site_key": site_key})).json()
            for _ in range(20)
        ]
    tenant_id = None
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    from desk import tokens  # the session's token names the tenant and visitor

    claims = [tokens.verify(os.environ["SECRET_KEY"], s["visitor_token"], 3600) for s in sessions]
    tenant_id = claims[0].tenant_id
    stop = asyncio.Event()

    async def publish() -> None:
        i = 0
        while not stop.is_set():
            visitor = claims[i % len(claims)].visitor_id
            item = Inbound(visitor_id=visitor, client_id=f"bench-{uuid.uuid4().hex}", body=f"outage {i}")
            try:
                await js.publish(
                    subjects.inbound(tenant_id, visitor),
                    bus.encode(item.payload()),
                    headers={"Nats-Msg-Id": subjects.inbound_msg_id(visitor, item.client_id)},
                )
            except Exception:
                pass
            i += 1
            await asyncio.sleep(1 / rate)

    async def backlog() -> int:
        info = await js.consumer_info(subjects.IN_STREAM, subjects.STORE_CONSUMER)
        return info.num_pending + info.num_ack_pending

    publisher = asyncio.create_task(publish())
    await asyncio.sleep(3)
    down_at = time.monotonic()
    await asyncio.to_thread(stack.postgres.kill)
    peak = 0
    while time.monotonic() - down_at < outage:
        peak = max(peak, await backlog())
        await asyncio.sleep(0.5)
    build_seconds = time.monotonic() - down_at
    up_at = time.monotonic()
    await asyncio.to_thread(stack.postgres.start)
    while await backlog() > rate:  # drained to what arrives in a second
        await asyncio.sleep(0.1)
    drain_seconds = time.monotonic() - up_at
    stop.set()
    await publisher
    await nc.close()
    return {
        "rate_per_s": rate,
        "outage_s": round(build_seconds, 1),
        "peak_backlog": peak,
        "drain_s": round(drain_seconds, 2),
        "build_over_drain": round(build_seconds / drain_seconds, 1),
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, running_fault_stack(Path(tmp)) as stack:
        tenant = stack.processes.bootstrap()
        site_key = tenant["site_key"]
        results = {
            "edge_killed": await edge_kill(stack, site_key, args.visitors),
            "worker_killed": await worker_kill(stack, site_key, 40),
            "postgres_outage": await postgres_outage(stack, site_key, args.rate, args.outage),
        }
    print(json.dumps(results, indent=2, default=lambda x: round(x, 2)))


if __name__ == "__main__":
    # On SIGTERM, unwind like Ctrl+C so the stack's processes and temporary folders are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second during the outage")
    parser.add_argument("--outage", type=float, default=30.0)
    asyncio.run(main(parser.parse_args()))
