"""Scale-out on a 3-node NATS cluster (issue 10, docs/scaling.md): two edges and two workers, streams with three
copies (NATS_STREAM_REPLICAS=3). Visitors on one edge chat with agents on the other; the node leading DESK_IN is
killed under load, and the checker then finds every acked message stored exactly once, in send order, and every
agent reply delivered to its visitor across the edges.

The figures printed (how long writes waited while a new leader was elected) are for docs/scaling.md; nothing
here asserts a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from honcho.environ import parse_procfile

from bench.cluster import NatsCluster, stream_leader
from desk import subjects
from desk.embedded import free_port
from desk.settings import ROOT
from tests.clients import session
from tests.conftest import Stack, wait_ready
from tests.faults.chaos import Agent, AgentView, Visitor, VisitorView, check, stream_drained
from tests.faults.stack import FAULT_SETTINGS

VISITORS = 20
INTERVAL = 0.5  # seconds between a visitor's messages: 40 messages/s in all
WARM_ACKS = 40  # messages acked before the kill: the chat works on both edges
AFTER_ACKS = 40  # messages first sent over a second after the kill and acked: writes resumed


@dataclass
class ClusterStack:
    cluster: NatsCluster
    processes: Stack
    edges: list[str]  # web1 on node 1, web2 on node 2
    start_worker: Callable[[str], None]
    restarts: int = 0

    def supervise(self, stop: threading.Event) -> None:
        """Start again a worker that exited, as systemd's Restart=on-failure does (deploy/systemd): a worker
        exits when its consumer has no leader for a moment (workers/base.py)."""
        while not stop.wait(0.5):
            for name, process in list(self.processes.processes.items()):
                if name.startswith("worker") and process.poll() is not None:
                    self.processes.stop(name)
                    self.start_worker(name)
                    self.restarts += 1


async def stream_replicas(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(subjects.IN_STREAM)).config.num_replicas
    finally:
        await nc.close()


async def consumers_led(cluster: NatsCluster, timeout: float = 30.0) -> None:
    """Until each durable consumer has a leader: a worker binding to one without fails (see supervise)."""
    nc = await nats.connect(cluster.urls)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        for stream, consumer in subjects.CONSUMERS.items():
            while True:
                try:
                    info = await js.consumer_info(stream, consumer.durable_name)
                    if info.cluster and info.cluster.leader:
                        break
                except nats.errors.Error:
                    pass
                assert time.monotonic() < deadline, f"consumer {consumer.durable_name} has no leader"
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def cluster_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    base = tmp_path_factory.mktemp("cluster")
    cluster = NatsCluster(base / "nats").start()
    env = {
        **os.environ,
        **FAULT_SETTINGS,
        "DATABASE_URL": database_url,
        "NATS_URL": cluster.url(0),
        "NATS_STREAM_REPLICAS": "3",
        "DESKBELL_DATA": str(base / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    procfile = parse_procfile((ROOT / "Procfile").read_text()).processes
    subprocess.run(procfile["release"], shell=True, env=env, cwd=ROOT, check=True)
    asyncio.run(consumers_led(cluster))
    processes = Stack(base_url="", env=env, log_dir=base)
    ports = [free_port(), free_port()]
    workers: dict[str, dict[str, str]] = {}
    try:
        for i, port in enumerate(ports):
            node = {"NATS_URL": cluster.url(i), "PORT": str(port), "HOST": "127.0.0.1"}
            processes.start(f"web{i + 1}", procfile["web"], {**env, **node})
        for i in (1, 2):  # workers on the second and third node
            workers[f"worker{i}"] = {**env, "NATS_URL": cluster.url(i)}
            processes.start(f"worker{i}", procfile["worker"], workers[f"worker{i}"])
        edges = [f"http://127.0.0.1:{port}" for port in ports]
        for edge in edges:
            wait_ready(edge)

        def start_worker(name: str) -> None:
            """On a node that is up: NATS_URL names one server (desk/bus.py)."""
            alive = next(i for i in range(cluster.size) if i in cluster.processes)
            processes.start(name, procfile["worker"], {**workers[name], "NATS_URL": cluster.url(alive)})

        yield ClusterStack(cluster, processes, edges, start_worker)
    finally:
        for name in list(processes.processes):
            processes.stop(name)
        cluster.stop()


@pytest.mark.timeout(300)
def test_killing_the_stream_leader_under_load_loses_and_duplicates_nothing(
    cluster_stack: ClusterStack, database_url: str
) -> None:
    tenant = cluster_stack.processes.bootstrap("cluster-ann", "cluster-bob")  # reply ids unique in the shared db
    visitor_edge, agent_edge = cluster_stack.edges
    for edge in cluster_stack.edges:  # a fresh process loads lazily on its first requests; the clients time out at 5 s
        for _ in range(3):
            session(edge, tenant["site_key"]).raise_for_status()
    cluster = cluster_stack.cluster

    async def scenario() -> tuple[list[VisitorView], list[AgentView], dict[str, float]]:
        views = [VisitorView(f"c{i:02d}") for i in range(VISITORS)]
        agent_views = [AgentView(a["email"]) for a in tenant["agents"]]
        visitors = [Visitor(v, visitor_edge, tenant["site_key"], 10**9, INTERVAL) for v in views]
        agents = [
            Agent(view, login["password"], agent_edge, views)
            for view, login in zip(agent_views, tenant["agents"], strict=True)
        ]
        deadline = time.monotonic() + 240
        visitor_tasks = [asyncio.create_task(v.run(deadline)) for v in visitors]
        agent_tasks = [asyncio.create_task(a.run(interval=0.5)) for a in agents]

        def acked(since: float = 0.0) -> int:
            return sum(v.first_sent_at[c] >= since for v in views for c in v.acked_at)

        async def until(done: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
            # Phases end on progress, not on time: a shared CI machine may be slow, never wrong.
            limit = time.monotonic() + timeout
            while not done():
                assert time.monotonic() < limit, f"not within {timeout} s: {what}"
                await asyncio.sleep(0.2)

        await until(lambda: acked() >= WARM_ACKS and any(a.sent for a in agent_views), "chatting across the edges")
        leader = await stream_leader(cluster.urls, subjects.IN_STREAM)
        assert leader, "DESK_IN has no leader"
        node = int(leader.rsplit("-", 1)[1]) - 1
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill_node, node)
        await until(lambda: acked(since=killed_at + 1) >= AFTER_ACKS, "storing again on two nodes", 120)
        resumed_at = time.monotonic()
        for v in visitors:
            v.stop_sending = True
        for a in agents:
            a.stop = True
        await asyncio.wait_for(asyncio.gather(*agent_tasks), 120)
        try:
            await asyncio.wait_for(asyncio.gather(*visitor_tasks), 180)
        except TimeoutError:  # say which messages never got their ack, for whoever reads the failure
            stuck = {v.name: list(v.unacked) for v in views if v.unacked}
            raise AssertionError(f"unacked after 180 s: {stuck}; {cluster_stack.processes.logs()}") from None
        alive = next(i for i in range(cluster.size) if i in cluster.processes)
        await stream_drained(cluster.url(alive), 120)
        await asyncio.gather(*(v.catch_up() for v in visitors))
        waits = [
            v.acked_at[c] - v.first_sent_at[c] for v in views for c in v.acked_at if v.first_sent_at[c] >= killed_at
        ]
        replicas = await stream_replicas(cluster.url(alive))
        return views, agent_views, {
            "killed": leader,
            "stream_replicas": replicas,
            "acked_before_kill": acked() - acked(since=killed_at),
            "acked_sent_after_kill": len(waits),
            "seconds_to_resume": round(resumed_at - killed_at, 2),
            "longest_wait_s": round(max(waits, default=0.0), 2),
        }

    stop = threading.Event()
    supervisor = threading.Thread(target=cluster_stack.supervise, args=(stop,), daemon=True)
    supervisor.start()
    try:
        views, agents, figures = asyncio.run(scenario())
    finally:
        stop.set()
        supervisor.join()
    figures["worker_restarts"] = cluster_stack.restarts
    figures.update(check(database_url, views, agents))
    print(json.dumps(figures))
    assert figures["stream_replicas"] == 3
    assert figures["agent_replies"] > 0, "no agent on the other edge replied"


def test_the_number_of_stream_copies_is_a_checked_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from desk import settings

    monkeypatch.delenv("NATS_STREAM_REPLICAS", raising=False)
    assert settings.load().stream_replicas == 1
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "3")
    assert settings.load().stream_replicas == 3
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "7")
    with pytest.raises(RuntimeError, match="NATS_STREAM_REPLICAS"):
        settings.load()
