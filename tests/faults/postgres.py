"""A PostgreSQL the fault tests may kill -9 and restart: the pgserver wheel's binaries, on a TCP port."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import psycopg

from desk.embedded import free_port, wait_for_port


class KillablePostgres:
    def __init__(self, data_dir: Path) -> None:
        from pgserver import _commands

        self.bin = _commands.POSTGRES_BIN_PATH
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root: run it as pgserver's own system user, as the wheel does.
        self.user = "pgserver" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        from pgserver import utils

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            utils.ensure_user_exists(self.user)
            utils.ensure_prefix_permissions(self.data_dir)
            entry = pwd.getpwnam(self.user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres", "-E", "utf8"],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def start(self) -> KillablePostgres:
        self._prepare()
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1"]
            + ["-k", str(self.data_dir), "-c", "max_connections=200"],
            user=self.user,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, timeout=30)
        deadline = time.monotonic() + 60  # after a crash, recovery replays the WAL before it accepts us
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """kill -9 the postmaster and every backend: a crash, recovered from the WAL at the next start."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            self.process.wait(30)
