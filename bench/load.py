"""Load harness (issue 10): visitors on real WebSockets and agents on the real console, against the Procfile's
processes, at rising offered load. docs/benchmarks.md records its figures.

    .venv/bin/python -m bench.load                          # starts its own stack; default steps
    .venv/bin/python -m bench.load --rates 50,100,300 --seconds 20 --visitors 300 --agents 5 --idle 2000

Per visitor message it records send → ack (the edge acks only what PostgreSQL has stored) and send → seen by an
agent (its `attention` event on an agent's `/live/console` stream, or the first `conversation` event after it
when that can only be its own: see Record.seen_at); per agent reply, POST →
answered (JetStream has it) and POST → the visitor's socket shows it. Visitors send at exponential think times
(offered rate / visitors on average per visitor, open loop: a slow server does not slow the senders down),
reconnect now and then (`--churn`), and re-send what was not acked, as the widget does. Prints the table, the
processes' CPU and RSS (psutil) and the `store` consumer's lag at the end of each step (a long step,
`--rates 300 --seconds 600`, shows whether it grows), writes JSON and an SVG chart of latency percentiles against
offered load.
A benchmark: it asserts nothing about time; tests/test_bench_harness.py runs it briefly so it cannot rot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
from honcho.environ import parse_procfile

from bench.load_clients import KEEPALIVE_SECONDS, MAX_IN_FLIGHT, AgentClient, Record, VisitorClient, heartbeats
from bench.load_report import ProcessGroup, Usage, percentiles, svg_chart, table, this_process
from desk import subjects
from desk.embedded import NatsServer, ensure_database, free_port, start_postgres
from desk.settings import ROOT

OUT = ROOT / "var" / "bench"
# Every client of the harness comes from 127.0.0.1, so the per-address abuse limits (docs/operations.md,
# "Abuse limits") would measure themselves: off for a benchmark.
UNLIMITED = {
    "DESKBELL_CONNECTIONS_PER_IP_PER_MINUTE": "0",
    "DESKBELL_SOCKETS_PER_IP": "0",
    "DESKBELL_SESSIONS_PER_IP_PER_HOUR": "0",
    "DESKBELL_FRAMES_PER_SECOND": "0",
}
DRAIN_SECONDS = 30.0  # after the last step, how long to wait for the last acks and replies


@dataclass
class RunningStack:
    base_url: str
    database_url: str
    nats_url: str
    tenant: dict[str, Any]
    groups: list[ProcessGroup] = field(default_factory=list)


@contextmanager
def running_stack(base: Path, agents: int, workers: int = 1, settings: dict[str, str] | None = None) -> Iterator[
    RunningStack
]:
    """release, `web` (WEB_CONCURRENCY processes, from `settings`) and `workers` × `worker` from the Procfile, a
    nats-server of its own and a database of its own on DATABASE_URL's PostgreSQL server (else the embedded one); a
    tenant with `agents` agents."""
    from tests.conftest import Stack, wait_ready  # the test suite's process runner, reused as it is

    server = os.environ.get("DATABASE_URL") or start_postgres(base / "pg", database="postgres")
    name = f"deskbell_bench_{secrets.token_hex(4)}"
    database_url = ensure_database(server, name)
    nats = NatsServer(base / "nats").start()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NATS_URL": nats.url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
        "DESKBELL_DATA": str(base / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        **UNLIMITED,
        **(settings or {}),
    }
    procfile = parse_procfile((ROOT / "Procfile").read_text()).processes
    stack = Stack(base_url=f"http://127.0.0.1:{port}", env=env, log_dir=base)
    try:
        subprocess.run(procfile["release"], shell=True, env=env, cwd=ROOT, check=True)
        stack.start("web", procfile["web"])
        for i in range(workers):
            stack.start(f"worker{i + 1}", procfile["worker"])
        wait_ready(stack.base_url, timeout=60)
        tenant = stack.bootstrap(*(f"agent{i}" for i in range(agents)))
        groups = [ProcessGroup("web", stack.processes["web"].pid)]
        groups += [ProcessGroup(n, p.pid) for n, p in stack.processes.items() if n.startswith("worker")]
        groups += [ProcessGroup("nats", nats.process.pid), ProcessGroup("postgres", database=name)]
        yield RunningStack(stack.base_url, database_url, nats.url, tenant, groups + [this_process()])
    finally:
        for process in list(stack.processes):
            stack.stop(process)
        nats.stop()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Options:
    visitors: int = 100
    agents: int = 4
    rates: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0, 300.0])
    seconds: float = 15.0
    reply_rate: float = 5.0  # agent replies per second, all agents together
    churn: float = 1.0  # reconnects per visitor per minute
    idle: int = 0  # idle visitor sockets opened after the load steps, for memory and heartbeat CPU
    idle_seconds: float = 45.0


STORM_CONCURRENCY = 200  # connects under way at once: httpx's pool slows down with thousands queued in it
# httpx clients the visitors share: one pool's bookkeeping grows with its connections (with one pool of 200, the
# harness used more CPU in a storm than the web process).
HTTP_CLIENTS = 20
HTTP_LIMITS = httpx.Limits(
    max_connections=STORM_CONCURRENCY // HTTP_CLIENTS,
    max_keepalive_connections=STORM_CONCURRENCY // HTTP_CLIENTS,
    keepalive_expiry=KEEPALIVE_SECONDS,
)


async def _storm(visitors: list[VisitorClient]) -> tuple[float, int]:
    """Connect them all at once (STORM_CONCURRENCY at a time); (seconds until every one had its welcome, how many
    failed)."""
    began = time.monotonic()
    limit = asyncio.Semaphore(STORM_CONCURRENCY)

    async def connect(visitor: VisitorClient) -> None:
        async with limit:
            await visitor.connect()

    results = await asyncio.gather(*(connect(v) for v in visitors), return_exceptions=True)
    return time.monotonic() - began, sum(isinstance(r, BaseException) for r in results)


async def _step(
    record: Record, visitors: list[VisitorClient], agents: list[AgentClient], rate: float, o: Options
) -> None:
    """Offer `rate` messages per second for `o.seconds` (Poisson arrivals on random visitors), with replies
    and churn at their own rates. Each arrival is a task of its own, so a slow send delays no other."""
    loop = asyncio.get_running_loop()
    end = loop.time() + o.seconds
    churn_rate = o.churn * len(visitors) / 60

    async def arrivals(per_second: float, act: Any) -> None:
        if per_second <= 0:
            return
        at = loop.time()
        while True:
            at += random.expovariate(per_second)
            if at >= end:
                return
            await asyncio.sleep(max(0.0, at - loop.time()))
            act(loop.time())

    def send(now: float) -> None:
        visitor = random.choice(visitors)
        if visitor.in_flight >= MAX_IN_FLIGHT:
            record.throttled += 1
            return
        loop.create_task(visitor.send_message(now))

    def reply(now: float) -> None:
        agent = random.choice(agents)
        if agent.conversations:
            loop.create_task(agent.reply(random.choice(agent.conversations), now))

    def churn(_: float) -> None:
        loop.create_task(random.choice(visitors).reconnect())

    replies = o.reply_rate if agents else 0.0
    await asyncio.gather(arrivals(rate, send), arrivals(replies, reply), arrivals(churn_rate, churn))


def _step_figures(record: Record, step: int, rate: float, seconds: float) -> dict[str, Any]:
    mine = [m for m in record.messages.values() if m.step == step]
    replies = [r for r in record.replies.values() if r.step == step]
    seen = [(record.seen_at(cid, m), m.at) for cid, m in record.messages.items() if m.step == step]
    reply_seen = [(record.reply_seen.get(cid), r.at) for cid, r in record.replies.items() if r.step == step]
    return {
        "offered_per_s": rate,
        "sent": len(mine),
        "acked": sum(m.acked_at is not None for m in mine),
        "acked_per_s": round(sum(m.acked_at is not None for m in mine) / seconds, 1),
        "ack_ms": percentiles([m.acked_at - m.at for m in mine if m.acked_at is not None]),
        "seen_ms": percentiles([t - at for t, at in seen if t is not None]),
        "seen_samples": sum(t is not None for t, _ in seen),
        "sent_behind": sum(m.behind for m in mine),
        "replies": len(replies),
        "replies_answered": sum(r.acked_at is not None for r in replies),
        "reply_ack_ms": percentiles([r.acked_at - r.at for r in replies if r.acked_at is not None]),
        "reply_seen_ms": percentiles([t - at for t, at in reply_seen if t is not None]),
        "replies_not_seen": sum(t is None for t, _ in reply_seen),
        "errors": {k.split(":", 1)[1]: v for k, v in record.errors.items() if k.startswith(f"{step}:")},
    }


async def run_load(stack: RunningStack, o: Options) -> dict[str, Any]:
    """The whole measurement against a running stack; returns the figures (the JSON that is written)."""
    record = Record()
    async with contextlib.AsyncExitStack() as clients:
        https = [
            await clients.enter_async_context(httpx.AsyncClient(timeout=30, limits=HTTP_LIMITS))
            for _ in range(HTTP_CLIENTS)
        ]
        site_key = stack.tenant["site_key"]
        visitors = [
            VisitorClient(record, https[i % HTTP_CLIENTS], stack.base_url, site_key, f"v{i}") for i in range(o.visitors)
        ]
        agents = [AgentClient(record, stack.base_url, a["email"], a["password"]) for a in stack.tenant["agents"]]
        await asyncio.gather(*(a.start() for a in agents))
        warm = VisitorClient(record, https[0], stack.base_url, site_key, "warm-up")  # the first request loads lazily
        await warm.connect()
        await warm.close()
        storm_seconds, storm_failed = await _storm(visitors)
        beating = asyncio.create_task(heartbeats(visitors))
        usage = Usage(stack.groups)
        steps = []
        for i, rate in enumerate(o.rates):
            record.step = i
            usage.start(time.monotonic())
            await _step(record, visitors, agents, rate, o)
            figures_usage = usage.stop(time.monotonic())
            steps.append((i, rate, {**figures_usage, "store_consumer_lag": await _lag(stack.nats_url)}))
        record.step = len(o.rates)  # errors while draining are counted apart
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline and (
            any(v.unacked for v in visitors)
            or any(r.acked_at and cid not in record.reply_seen for cid, r in record.replies.items())
        ):
            await asyncio.sleep(0.2)
        idle = await _idle(record, https, stack, site_key, o) if o.idle else None
        beating.cancel()
        for v in visitors:
            await v.close()
        for a in agents:
            await a.close()
    results = [
        {**_step_figures(record, i, rate, o.seconds), "lag": u.pop("store_consumer_lag"), "usage": u}
        for i, rate, u in steps
    ]
    return {
        "options": o.__dict__,
        "storm": {"visitors": o.visitors, "seconds": round(storm_seconds, 2), "failed": storm_failed},
        "steps": results,
        "unacked": sum(m.acked_at is None for m in record.messages.values()),
        "replies_unanswered": sum(r.acked_at is None for r in record.replies.values()),
        "throttled": record.throttled,
        "requests_retried": record.retried,
        "drain_errors": {k.split(":", 1)[1]: v for k, v in record.errors.items() if k.startswith(f"{len(o.rates)}:")},
        "stored": _stored(stack.database_url, record),
        "idle": idle,
    }


async def _lag(nats_url: str) -> int:
    """Messages the `store` consumer has not yet acked (waiting, and handed out): it must not grow step by step."""
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info(subjects.IN_STREAM, subjects.STORE_CONSUMER)
        return info.num_pending + info.num_ack_pending
    finally:
        await nc.close()


async def _idle(
    record: Record, https: list[httpx.AsyncClient], stack: RunningStack, site_key: str, o: Options
) -> dict:
    """`o.idle` more visitors connect at once and stay silent but for their heartbeats (widget.js's: a ping
    when the server has said nothing for a while, a pong to its ping): the web process's RSS per socket and its
    CPU over `o.idle_seconds`."""
    web = next(g for g in stack.groups if g.name == "web")
    before = web.rss_bytes()
    idle = [VisitorClient(record, https[i % len(https)], stack.base_url, site_key, f"idle{i}") for i in range(o.idle)]
    seconds, failed = await _storm(idle)
    beating = asyncio.create_task(heartbeats(idle))
    usage = Usage([web, this_process()])
    usage.start(time.monotonic())
    await asyncio.sleep(o.idle_seconds)
    used = usage.stop(time.monotonic())
    after = web.rss_bytes()
    beating.cancel()
    for v in idle:
        await v.close()
    return {
        "sockets": o.idle,
        "storm_seconds": round(seconds, 2),
        "failed": failed,
        "web_rss_before_mib": round(before / 2**20, 1),
        "web_rss_after_mib": round(after / 2**20, 1),
        "rss_per_socket_kib": round((after - before) / 1024 / max(1, o.idle - failed), 1),
        "web_cpu_percent": used["web"]["cpu_percent"],
        "seconds": o.idle_seconds,
    }


def _stored(database_url: str, record: Record) -> dict[str, int]:
    """What PostgreSQL holds of the messages sent: each once (the unique key) and none missing."""
    ids = list(record.messages)
    replies = [f"agent:{cid}" for cid in record.replies]
    with psycopg.connect(database_url) as conn:
        visitor_rows, visitor_distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (visitor_id, client_id)) FROM messages WHERE client_id = ANY(%s)",
            (ids,),
        ).fetchone()
        reply_rows = conn.execute("SELECT count(*) FROM messages WHERE client_id = ANY(%s)", (replies,)).fetchone()[0]
    return {
        "visitor_messages_sent": len(ids),
        "visitor_messages_stored": visitor_rows,
        "visitor_messages_distinct": visitor_distinct,
        "agent_replies_sent": len(replies),
        "agent_replies_stored": reply_rows,
    }


def write_outputs(figures: dict[str, Any], out: Path, title: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, svg_path = out / "load.json", out / "load.svg"
    json_path.write_text(json.dumps(figures, indent=2))
    svg_path.write_text(svg_chart(figures["steps"], title))
    return json_path, svg_path


def print_report(figures: dict[str, Any]) -> None:
    print(table(figures["steps"]))
    storm, stored = figures["storm"], figures["stored"]
    print(f"\nconnection storm: {storm['visitors']} visitors with a session and a welcome in {storm['seconds']} s, "
          f"{storm['failed']} failed")
    print(f"unacked at the end: {figures['unacked']}; replies unanswered: {figures['replies_unanswered']}; "
          f"sends skipped (visitor had {MAX_IN_FLIGHT} in flight): {figures['throttled']}; "
          f"requests sent again after their connection closed: {figures.get('requests_retried', 0)}")
    print(f"stored: {stored}")
    for s in figures["steps"]:
        rss = ", ".join(f"{k} {v['rss_mib']:.0f}" for k, v in s["usage"].items())
        print(
            f"  {s['offered_per_s']:.0f}/s  sent behind an unacked one of the same visitor: {s['sent_behind']} of "
            f"{s['sent']}; seen measured for {s['seen_samples']}; store consumer lag at the end: {s['lag']}; "
            f"RSS MiB: {rss}; errors: {s['errors'] or 'none'}"
        )
    if figures["idle"]:
        print(f"idle sockets: {json.dumps(figures['idle'])}")


def parse_options(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Options()
    parser.add_argument("--visitors", type=int, default=d.visitors)
    parser.add_argument("--agents", type=int, default=d.agents)
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in d.rates), help="offered messages/s per step")
    parser.add_argument("--seconds", type=float, default=d.seconds, help="length of each step")
    parser.add_argument("--reply-rate", type=float, default=d.reply_rate, help="agent replies/s, all agents")
    parser.add_argument("--churn", type=float, default=d.churn, help="reconnects per visitor per minute")
    parser.add_argument("--idle", type=int, default=d.idle, help="idle sockets to hold after the steps")
    parser.add_argument("--idle-seconds", type=float, default=d.idle_seconds)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--web", type=int, default=1, help="web processes on the one port (WEB_CONCURRENCY)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for load.json and load.svg")
    args = parser.parse_args(argv)
    options = Options(
        visitors=args.visitors,
        agents=args.agents,
        rates=[float(r) for r in args.rates.split(",")],
        seconds=args.seconds,
        reply_rate=args.reply_rate,
        churn=args.churn,
        idle=args.idle,
        idle_seconds=args.idle_seconds,
    )
    return options, args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options, args = parse_options(argv)
    web = {"WEB_CONCURRENCY": str(args.web)}
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), options.agents, args.workers, web) as stack:
        figures = asyncio.run(run_load(stack, options))
    figures["load_average"] = os.getloadavg()
    json_path, svg_path = write_outputs(figures, args.out, "Deskbell: visitor message send → stored ack")
    print_report(figures)
    print(f"\nwrote {json_path} and {svg_path}")
    return figures


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl+C (asyncio cancels the run), so the stack's processes are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
