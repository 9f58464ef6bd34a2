"""`deskbell doctor`: is this installation able to chat? One line per check, non-zero exit on a failure.

The checks are plain functions returning a Check, so `/readyz` (web/health.py) and `deskbell dev` use the same
ones. docs/operations.md, "Self-check", lists what each one means and how to fix it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import psycopg

from desk import settings

# Below this much free space (bytes, and share of the disk) JetStream and PostgreSQL are close to refusing writes.
MIN_FREE_BYTES = int(os.environ.get("DESKBELL_MIN_FREE_BYTES") or 1024**3)
MIN_FREE_SHARE = 0.05
MAX_CLOCK_SKEW_SECONDS = 2.0
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<12} {self.detail}"


def _safely(name: str, probe: Callable[[], Check]) -> Check:
    try:
        return probe()
    except Exception as exc:  # a check that cannot run is a failed check, and says why
        return Check(name, False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


def configuration() -> Check:
    def probe() -> Check:
        config = settings.load()
        missing = [n for n, v in (("DATABASE_URL", config.database_url), ("NATS_URL", config.nats_url)) if not v]
        if missing:
            return Check("config", False, f"{' and '.join(missing)} not set")
        if not config.development and not (config.public_url or "").startswith("https://"):
            return Check("config", False, "PUBLIC_URL must be the https:// address browsers use (production)")
        return Check("config", True, f"{config.env} mode, data in {config.data_dir}")

    return _safely("config", probe)


@cache
def _scripts():  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory

    from desk.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config())


def migration_head() -> str:
    return _scripts().get_current_head() or ""


def migrations_behind(level: str | None) -> bool:
    """Is the database older than this code? A revision this code does not know is newer: during a rolling
    upgrade old processes run on the new, expanded schema, and that is fine (docs/operations.md)."""
    if level == migration_head():
        return False
    if level is None:
        return True
    try:
        return _scripts().get_revision(level) is not None
    except Exception:  # alembic raises for an unknown revision: a newer one
        return False


def _connect(url: str | None = None) -> psycopg.Connection:
    url = url or settings.load().database_url or ""
    return psycopg.connect(settings.sqlalchemy_url(url).replace("+psycopg", ""), connect_timeout=TIMEOUT_SECONDS)


def database_level(url: str | None = None) -> str | None:
    """The database's migration revision (None: never migrated)."""
    with _connect(url) as conn:
        if not conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()[0]:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


def database() -> Check:
    def probe() -> Check:
        level, head = database_level(), migration_head()
        if migrations_behind(level):
            return Check(
                "database", False, f"migrations at {level or 'none'}, code needs {head}: run `deskbell release`"
            )
        return Check("database", True, f"reachable, migrations at {level} (this code needs {head})")

    return _safely("database", probe)


def clock() -> Check:
    """This machine's clock against PostgreSQL's: tokens, snoozes and receipts compare times across machines."""

    def probe() -> Check:
        with _connect() as conn:
            before = time.time()
            server = conn.execute("SELECT now()").fetchone()[0]
            after = time.time()
        skew = server.timestamp() - (before + after) / 2
        if abs(skew) > MAX_CLOCK_SKEW_SECONDS + (after - before):
            return Check("clock", False, f"{skew:+.1f} s from the database server's clock: run NTP on both")
        return Check("clock", True, f"{skew:+.3f} s from the database server")

    return _safely("clock", probe)


def jetstream() -> Check:
    def probe() -> Check:
        url = settings.load().nats_url or ""
        try:
            return asyncio.run(_jetstream(url))
        except TimeoutError:
            return Check("nats", False, f"{url}: no connection within {TIMEOUT_SECONDS:.0f} s (is nats-server up?)")

    return _safely("nats", probe)


async def _jetstream(url: str) -> Check:
    import nats

    from desk import subjects

    async def quiet(_exc: Exception) -> None:  # the check's line says what failed; no tracebacks
        return None

    # nats-py retries a refused first connection for ever: the deadline is ours.
    nc = await asyncio.wait_for(
        nats.connect(url.split(","), connect_timeout=TIMEOUT_SECONDS, allow_reconnect=False, error_cb=quiet),
        TIMEOUT_SECONDS,
    )
    try:
        js = nc.jetstream(timeout=TIMEOUT_SECONDS)
        problems = []
        for stream in subjects.STREAMS:
            try:
                await js.stream_info(stream.name)
            except Exception:
                problems.append(f"stream {stream.name} missing")
        for stream, consumer in subjects.CONSUMERS.items():
            try:
                info = await js.consumer_info(stream, consumer.durable_name)
            except Exception:
                problems.append(f"consumer {consumer.durable_name} missing")
                continue
            if info.num_pending and info.num_pending > 10_000:
                problems.append(f"consumer {consumer.durable_name} is {info.num_pending} messages behind")
        if problems:
            return Check("nats", False, "; ".join(problems) + ": run `deskbell release`, check the workers")
        return Check(
            "nats", True, f"{nc.connected_url.netloc if nc.connected_url else url}: streams and consumers ready"
        )
    finally:
        await nc.close()


def disk() -> Check:
    def probe() -> Check:
        data_dir = settings.load().data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
            pass
        usage = shutil.disk_usage(data_dir)
        free_gib = usage.free / 1024**3
        if usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_SHARE:
            return Check("disk", False, f"only {free_gib:.2f} GiB free in {data_dir}")
        return Check("disk", True, f"{data_dir} writable, {free_gib:.1f} GiB free")

    return _safely("disk", probe)


def public_edge(public_url: str | None = None) -> Check:
    """Through the address browsers use: the readiness page answers and a WebSocket reaches the edge (which
    closes it with 4401 for want of a token: proof the upgrade went through every proxy on the way)."""

    def probe() -> Check:
        import httpx
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        config = settings.load()
        base = (public_url or config.public_url or f"http://127.0.0.1:{config.port}").rstrip("/")
        ready = httpx.get(base + "/readyz", timeout=TIMEOUT_SECONDS)
        if ready.status_code != 200:
            return Check("edge", False, f"{base}/readyz answered {ready.status_code}: {ready.text[:200]}")
        ws_url = "ws" + base[len("http") :] + "/ws/visitor"
        try:
            with connect(ws_url, open_timeout=TIMEOUT_SECONDS, close_timeout=1) as ws:
                ws.recv(timeout=TIMEOUT_SECONDS)
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == 4401:
                return Check("edge", True, f"{ws_url} reaches the socket edge")
            return Check("edge", False, f"{ws_url} closed with {closed.rcvd.code if closed.rcvd else 'no code'}")
        except InvalidStatus as exc:
            return Check("edge", False, f"{ws_url}: upgrade refused ({exc.response.status_code}); check the proxy")
        return Check("edge", False, f"{ws_url} answered without closing: not the Deskbell edge?")

    return _safely("edge", probe)


def run_all(public_url: str | None = None, edge: bool = True) -> list[Check]:
    # Email has its own check, `deskbell mail` (desk/mail_health.py): a tenant's unset or failing mail server is
    # that tenant's matter, not a reason to call the installation unhealthy.
    checks = [configuration(), database(), clock(), jetstream(), disk()]
    if edge:
        checks.append(public_edge(public_url))
    return checks


def report(checks: list[Check], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(
            {
                "ok": all(c.ok for c in checks),
                "at": datetime.now(UTC).isoformat(),
                "host": os.uname().nodename,
                "checks": [c.__dict__ for c in checks],
            }
        )
    return "\n".join(c.line() for c in checks)
