"""Zero lost, zero duplicated, zero gaps while every part of the system fails in turn (issue: zero loss).

20 visitors and 2 agents chat through the proxies while, one after another, an edge, a worker, nats-server
and PostgreSQL are killed with SIGKILL and restarted, a worker is paused for longer than the ack wait, and each
hop is blackholed for 10 s. Then every client flushes its outbox and catches up, and the checker compares
each client's record with PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import nats
import pytest

from desk import subjects
from tests.faults.chaos import Agent, AgentView, Visitor, VisitorView, check
from tests.faults.conftest import FaultStack

VISITORS = 20
MIN_MESSAGES = 5000
INTERVAL = 0.33  # seconds between a visitor's messages: ~60 messages/s offered in all


def schedule(stack: FaultStack) -> list[tuple[str, float, object]]:
    """(what, seconds to wait after it, action) — run in order while the clients chat."""

    def kill_restart(name: str):  # type: ignore[no-untyped-def]
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

    def blackhole(name: str):  # type: ignore[no-untyped-def]
        def act() -> None:
            stack.proxies[name].set("blackhole")
            time.sleep(10)
            stack.proxies[name].set("pass")

        return act

    steps: list[tuple[str, float, object]] = [
        ("warm up", 5, lambda: None),
        ("kill -9 edge web1, restart after 3 s", 5, kill_restart("web1")),
        ("kill -9 worker1, restart after 3 s", 5, kill_restart("worker1")),
        ("kill -9 nats-server, restart after 3 s", 8, restart_nats),
        ("kill -9 PostgreSQL, restart after 3 s", 5, restart_postgres),
        ("SIGSTOP worker2 for ack wait + 5 s", 5, pause_worker),
    ]
    for hop in ("client_edge", "edge_nats", "worker_nats", "worker_pg"):
        steps.append((f"blackhole {hop} for 10 s", 5, blackhole(hop)))
    return steps


async def _stream_drained(url: str, timeout: float) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while (await js.stream_info(subjects.IN_STREAM)).state.messages:
            assert time.monotonic() < deadline, "DESK_IN still has messages waiting to be stored"
            await asyncio.sleep(0.5)
    finally:
        await nc.close()


@pytest.mark.timeout(900)
def test_no_message_is_lost_duplicated_or_out_of_order_while_every_part_fails(fault_stack: FaultStack) -> None:
    tenant = fault_stack.processes.bootstrap("ann", "bob")
    views = [VisitorView(f"v{i:02d}") for i in range(VISITORS)]
    agent_views = [AgentView(a["email"]) for a in tenant["agents"]]
    log: list[str] = []

    async def main() -> None:
        deadline = time.monotonic() + 600
        visitors = [Visitor(v, fault_stack.base_url, tenant["site_key"], 10_000, INTERVAL) for v in views]
        agents = [
            Agent(view, login["password"], fault_stack.base_url, views)
            for view, login in zip(agent_views, tenant["agents"], strict=True)
        ]
        visitor_tasks = [asyncio.create_task(v.run(deadline)) for v in visitors]
        agent_tasks = [asyncio.create_task(a.run(interval=1.0)) for a in agents]
        for what, settle, act in schedule(fault_stack):
            started = time.monotonic()
            await asyncio.to_thread(act)  # type: ignore[arg-type]
            await asyncio.sleep(settle)
            sent = sum(len(v.sent) for v in views)
            log.append(f"{what}: {time.monotonic() - started:.1f} s, {sent} sent so far")
        while sum(len(v.sent) for v in views) < MIN_MESSAGES and time.monotonic() < deadline:
            await asyncio.sleep(1)
        for v in visitors:
            v.stop_sending = True
        for a in agents:
            a.stop = True
        await asyncio.wait_for(asyncio.gather(*agent_tasks), 120)
        await asyncio.wait_for(asyncio.gather(*visitor_tasks), 180)  # each flushes its outbox, then ends
        await _stream_drained(fault_stack.nats.url, 120)
        await asyncio.gather(*(v.catch_up() for v in visitors))

    asyncio.run(main())
    figures = check(fault_stack.database_url, views, agent_views)
    print("\n".join(log))
    print(json.dumps(figures))
    assert figures["visitor_messages"] >= MIN_MESSAGES
    assert figures["agent_replies"] > 0
