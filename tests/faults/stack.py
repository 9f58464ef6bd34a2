"""The fault-injection stack: two edges and two workers from the Procfile, a nats-server and a PostgreSQL that
may be killed, and a proxy on each hop (client→edge, edge→NATS, worker→NATS, worker→PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from honcho.environ import parse_procfile

from desk.embedded import NatsServer, ensure_database, free_port
from desk.settings import ROOT
from tests.conftest import Stack, wait_ready
from tests.faults.postgres import KillablePostgres
from tests.faults.proxy import Proxy

FAULT_SETTINGS = {
    "DESKBELL_HEARTBEAT_SECONDS": "2",
    "DESKBELL_ACK_TIMEOUT_SECONDS": "5",
    "PYTHONUNBUFFERED": "1",
    # Every client comes through the one proxy address: the per-address abuse limits would count them as one.
    "DESKBELL_CONNECTIONS_PER_IP_PER_MINUTE": "0",
    "DESKBELL_SOCKETS_PER_IP": "0",
    "DESKBELL_SESSIONS_PER_IP_PER_HOUR": "0",
    "DESKBELL_CONNECTIONS_PER_VISITOR_PER_MINUTE": "0",  # the chaos clients reconnect every 0.2-1 s in outages
}


@dataclass
class FaultStack:
    processes: Stack
    postgres: KillablePostgres
    nats: NatsServer
    database_url: str
    proxies: dict[str, Proxy] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.proxies['client_edge'].port}"

    def start(self, name: str) -> None:
        self.processes.start(name, self.commands[name], self.envs[name])

    def kill(self, name: str) -> None:
        import signal

        self.processes.stop(name, signal.SIGKILL)


@contextmanager
def running_fault_stack(base: Path, settings: dict[str, str] | None = None) -> Iterator[FaultStack]:
    """Start the whole fault stack under `base` (also used by bench/recovery.py and bench/chaos_long.py)."""
    postgres = KillablePostgres(base / "pg").start()
    database_url = ensure_database(postgres.url, "deskbell")
    nats = NatsServer(base / "nats").start()
    web_ports = [free_port(), free_port()]
    proxies = {
        "client_edge": Proxy(*web_ports).start(),
        "edge_nats": Proxy(nats.port).start(),
        "worker_nats": Proxy(nats.port).start(),
        "worker_pg": Proxy(postgres.port).start(),
    }
    common = dict(os.environ)
    common.update(FAULT_SETTINGS)
    common.update(settings or {})
    common["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{common.get('PATH', '')}"
    common["DESKBELL_DATA"] = str(base / "data")
    direct = {**common, "DATABASE_URL": database_url, "NATS_URL": nats.url}
    worker_db = database_url.replace(f":{postgres.port}/", f":{proxies['worker_pg'].port}/")
    procfile = parse_procfile((ROOT / "Procfile").read_text()).processes
    subprocess.run(procfile["release"], shell=True, env=direct, cwd=ROOT, check=True)

    stack = FaultStack(
        processes=Stack(base_url="", env=direct, log_dir=base),
        postgres=postgres,
        nats=nats,
        database_url=database_url,
        proxies=proxies,
    )
    for i, port in enumerate(web_ports, 1):
        stack.commands[f"web{i}"] = procfile["web"]
        stack.envs[f"web{i}"] = {
            **direct,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "NATS_URL": f"nats://127.0.0.1:{proxies['edge_nats'].port}",
        }
    for i in (1, 2):
        stack.commands[f"worker{i}"] = procfile["worker"]
        stack.envs[f"worker{i}"] = {
            **direct,
            "DATABASE_URL": worker_db,
            "NATS_URL": f"nats://127.0.0.1:{proxies['worker_nats'].port}",
        }
    for name in stack.commands:
        stack.start(name)
    try:
        for port in web_ports:
            wait_ready(f"http://127.0.0.1:{port}")
        yield stack
    finally:
        for name in list(stack.processes.processes):
            stack.processes.stop(name)
        for proxy in proxies.values():
            proxy.stop()
        nats.stop()
        postgres.stop()
