"""The console's server time with a big tenant (issue 5): 100,000 conversations and 1,000,000 messages.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.console [--keep] [--reuse]

1. Creates the database `deskbell_bench_console` on DATABASE_URL's server, migrates it, makes a tenant with the
   real bootstrap and account actions, then fills it with COPY: visitors (some identified, with names and emails),
   conversations in every status (with their assignment, resolution and some private notes as conversation
   events), and messages whose bodies are drawn from a Zipf-like vocabulary (support words, a long tail of
   made-up names, order numbers, some Chinese), so full-text search has common and rare words.
   The secondary indexes are dropped for the load and rebuilt from their own definitions, then VACUUM ANALYZE.
2. Logs in through the real login form of the Flask app (app.test_client()) and requests each console URL
   REQUESTS times after a warm-up. Server time = the time inside the WSGI app, body included.
3. The raw baseline: every SQL statement a request ran (captured from SQLAlchemy) replayed with plain psycopg.
4. Prints median / p90 / p99 of both. Drops the database unless --keep (--reuse measures a kept one again).

docs/benchmarks.md records the figures. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors

DB_NAME = "deskbell_bench_console"
AGENTS = 20
PASSWORD = "bench-" + secrets.token_urlsafe(12)
NOW = datetime.now(UTC).replace(microsecond=0)
TABLES = ("visitors", "conversations", "messages", "conversation_events")

# Support-chat words, most frequent first (rank 1 is the most common word), then a long tail of made-up names.
COMMON = """
i the to my a is it you and for hi order can please not have this on with of in me thanks be what do we your
how but hello there get when will that are was just so need help am no yes ok still an did at any if would like
know from today out about as one or they time has been up all could there tracking number now back thank
payment card refund delivery package account email password shipping price item product cancel return size
address invoice subscription plan discount code coupon login reset change problem issue wrong received damaged
missing late week days shipped arrive arrived store online website app phone call support agent question
answer checkout cart stock available colour color model warranty repair replace replacement exchange receipt
bank transfer paypal charged twice fee tax shipping express standard international customs tracking courier
parcel box open opened broken screen battery charger cable update install download error message page loading
slow crash bug feature request premium trial upgrade downgrade billing monthly yearly renew renewal expired
expire credit debit visa mastercard declined approved pending processing confirm confirmation verify
verification link click button settings profile name surname company business team member invite access
permission admin owner delete remove add edit save saved lost found weekend monday tuesday wednesday thursday
friday saturday sunday morning afternoon evening tomorrow yesterday hours minutes sorry great good bad perfect
fine awesome excellent terrible disappointed happy unhappy urgent asap quickly soon later wait waiting waited
""".split()
CHINESE = [
    "你好",
    "我想退款",
    "我的订单还没到",
    "请问什么时候发货",
    "谢谢你的帮助",
    "密码忘记了",
    "怎么修改地址",
    "优惠码不能用",
    "发票",
    "可以换货吗",
]
FIRST_NAMES = "ada grace alan linus ken dennis barbara margaret joan hedy katherine annie mary radia frances".split()
LAST_NAMES = "lovelace hopper turing torvalds thompson ritchie liskov hamilton clarke lamarr johnson easley".split()
ZONES = ("Europe/Paris", "Asia/Shanghai", "America/New_York", "Asia/Kolkata", "Europe/London", "America/Sao_Paulo")
# Row-level security (migration 0008) lets an index serve a condition only when every function in it that reads
# a column is LEAKPROOF; PostgreSQL marks none of these so. --leakproof marks them in the bench database only.
LEAKPROOF = ("ts_match_vq(tsvector, tsquery)", "to_tsvector(regconfig, text)", "textcat(text, text)")
STATUSES = (("resolved", 60), ("open", 20), ("pending", 10), ("snoozed", 10))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def made_up_words(rng: random.Random, n: int) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < n:
        words["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))] = None
    return list(words)


class Bodies:
    """Message bodies of 3..25 words drawn with P(rank r) ~ 1/r over the whole vocabulary (Zipf, s = 1)."""

    def __init__(self, rng: random.Random, tail: int = 20_000) -> None:
        self.rng = rng
        self.vocabulary = list(dict.fromkeys(COMMON)) + made_up_words(rng, tail)
        weights = [1 / rank for rank in range(1, len(self.vocabulary) + 1)]
        self.pool = rng.choices(self.vocabulary, weights=weights, k=2_000_000)
        self.at = 0

    def __call__(self) -> str:
        rng = self.rng
        if rng.random() < 0.01:
            return "".join(rng.sample(CHINESE, rng.randint(1, 3)))
        n = rng.randint(3, 25)
        if self.at + n > len(self.pool):
            self.at = rng.randrange(1000)
        words = self.pool[self.at : self.at + n]
        self.at += n
        if rng.random() < 0.3:
            words.append(f"#{rng.randint(10000, 99999)}")
        return " ".join(words)


def _copy_text(value: object) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_rows(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> int:
    """COPY in text format, written in chunks of formatted lines (much faster than a row at a time)."""
    count = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join(map(_copy_text, row)))
            buffer.write("\n")
            count += 1
            if count % 20_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return count


@dataclass
class Filled:
    tenant_id: uuid.UUID
    login_email: str
    conversations: list[uuid.UUID] = field(default_factory=list)


def create_tenant(url: str) -> tuple[uuid.UUID, uuid.UUID, list[tuple[uuid.UUID, str]], str]:
    """The tenant, its site and AGENTS agents, made by the real actions: (tenant, site, agents, login email)."""
    from sqlalchemy import select

    from desk.actions.tenants import do_bootstrap_tenant, do_create_user
    from desk.db import system_session, tenant_session
    from desk.models import Site, Tenant, User

    with system_session(url) as session:
        do_bootstrap_tenant(
            session, slug="bench", name="Bench", owner_email="owner@bench.test", site_name="Shop", allowed_origins=[]
        )
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == "bench"))
    with tenant_session(tenant_id, url) as session:
        site_id = session.scalar(select(Site.id))
        first = do_create_user(session, email="agent0@bench.test", name="Agent 0", role="agent", password=PASSWORD)
        users = [first] + [
            User(email=f"agent{i}@bench.test", name=f"Agent {i}", role="agent", password_hash=first.password_hash)
            for i in range(1, AGENTS)
        ]  # one password hash for all: hashing is slow on purpose
        for user in users:
            user.presence = "online"
            session.add(user)
        session.commit()
        agents = [(user.id, user.name) for user in users]
    return tenant_id, site_id, agents, "agent0@bench.test"


def fill(url: str, conversations: int, messages: int, seed: int) -> Filled:
    rng = random.Random(seed)
    started = time.monotonic()
    tenant_id, site_id, agents, login = create_tenant(url)
    bodies = Bodies(rng)
    n_visitors = int(conversations * 0.7)
    per_conversation = messages / conversations
    visitor_ids = [uuid.uuid4() for _ in range(n_visitors)]
    last_seq = [0] * n_visitors
    last_seen = [NOW - timedelta(days=400)] * n_visitors
    conv_rows: list[tuple] = []
    msg_rows: list[tuple] = []
    event_rows: list[tuple] = []
    events_rng = random.Random(seed + 1)  # its own: the messages and conversations stay those of earlier runs
    span = timedelta(days=365).total_seconds()
    for k in range(conversations):
        v = k % n_visitors
        created = NOW - timedelta(seconds=span * (1 - k / conversations)) - timedelta(minutes=30)
        n = rng.randint(1, max(1, round(2 * per_conversation) - 1))  # uniform: the mean is per_conversation
        latest = k + n_visitors >= conversations
        status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0] if latest else "resolved"
        assignee = rng.choice(agents) if status == "resolved" or rng.random() < 0.8 else None
        conv_id = uuid.uuid4()
        at = created
        body = ""
        for i in range(n):
            last_seq[v] += 1
            seq = last_seq[v]
            sender = "visitor" if i % 2 == 0 or assignee is None else "agent"
            body = bodies()
            at += timedelta(seconds=rng.randint(5, 180))
            author = assignee if sender == "agent" else None
            msg_rows.append(
                (tenant_id, visitor_ids[v], conv_id, seq, f"b{seq}", sender, author and author[0], author and author[1],
                 body, at)
            )  # fmt: skip
        last_seen[v] = at
        open_ = status == "open"
        # What the pane's timeline shows besides messages: routing's assignment, a private note now and then,
        # the resolution.
        if assignee is not None:
            event_rows.append(
                (tenant_id, conv_id, "assigned", None, None, "", json.dumps(
                    {"assignee_id": str(assignee[0]), "assignee_name": assignee[1], "by": "routing"}),
                 created + timedelta(seconds=1))
            )  # fmt: skip
            if events_rng.random() < 0.1:
                note = f"customer since {events_rng.randint(2015, 2026)}, order #{events_rng.randint(10000, 99999)}"
                event_rows.append(
                    (tenant_id, conv_id, "note", assignee[0], assignee[1], note, "{}", at - timedelta(seconds=1))
                )
        if status == "resolved":
            author = assignee or (None, None)
            event_rows.append((tenant_id, conv_id, "resolved", author[0], author[1], "", "{}", at))
        conv_rows.append(
            (tenant_id, conv_id, visitor_ids[v], status, assignee and assignee[0], body[:140], created, at,
             rng.randint(1, 3) if open_ else 0, at if open_ else None, at if status == "resolved" else None,
             at + timedelta(days=1) if status == "snoozed" else None, last_seq[v])
        )  # fmt: skip
    print(f"generated {len(conv_rows):,} conversations, {len(msg_rows):,} messages and {len(event_rows):,} events in "
          f"{time.monotonic() - started:.0f}s", flush=True)  # fmt: skip

    def visitor_rows() -> Iterator[tuple]:
        for v, vid in enumerate(visitor_ids):
            kind = rng.random()
            name = email = external = None
            if kind < 0.4:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                name, email, external = f"{first.title()} {last.title()}", f"{first}.{last}{v}@example.com", f"u-{v}"
            elif kind < 0.55:
                email = f"visitor{v}@mail.example"
            context = json.dumps(
                {"timezone": rng.choice(ZONES), "browser": "Chrome 124", "os": "Windows 10", "device": "desktop",
                 "country": "FR", "country_name": "France", "attributes": {"plan": rng.choice(("free", "pro"))}}
            )  # fmt: skip
            page = json.dumps({"url": f"https://shop.example/p/{v}", "title": f"Product {v}"})
            yield (tenant_id, vid, site_id, external, name, email, last_seq[v], page, context, "[]",
                   last_seen[v] - timedelta(days=1), last_seen[v])  # fmt: skip

    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers: the rows are consistent
        conn.execute("SET synchronous_commit = off")
        dropped = drop_secondary_indexes(conn)
        t = time.monotonic()
        copy_rows(conn, "visitors", ("tenant_id", "id", "site_id", "external_id", "name", "email", "last_seq", "page",
                                     "context", "trail", "created_at", "last_seen_at"), visitor_rows())  # fmt: skip
        copy_rows(conn, "conversations", ("tenant_id", "id", "visitor_id", "status", "assignee_id",
                                          "last_message_preview", "created_at", "last_activity_at", "unread_count",
                                          "waiting_since", "resolved_at", "snoozed_until", "agent_read_seq"),
                  conv_rows)  # fmt: skip
        copy_rows(conn, "messages", ("tenant_id", "visitor_id", "conversation_id", "seq", "client_id", "sender",
                                     "author_id", "author_name", "body", "created_at"), msg_rows)  # fmt: skip
        copy_rows(conn, "conversation_events", ("tenant_id", "conversation_id", "kind", "author_id", "author_name",
                                                "body", "detail", "created_at"), event_rows)  # fmt: skip
        conn.commit()
        print(f"copied in {time.monotonic() - t:.0f}s", flush=True)
        t = time.monotonic()
        conn.execute("SET maintenance_work_mem = '1GB'")
        for statement in dropped:
            conn.execute(statement)
        conn.commit()
        print(f"rebuilt {len(dropped)} indexes in {time.monotonic() - t:.0f}s", flush=True)
    t = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    print(f"VACUUM ANALYZE in {time.monotonic() - t:.0f}s; filled in {time.monotonic() - started:.0f}s", flush=True)
    return Filled(tenant_id, login, [row[1] for row in conv_rows])


def drop_secondary_indexes(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop the indexes that back no constraint on the big tables; returns the statements that rebuild them."""
    rows = conn.execute(
        """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
           WHERE t.relname = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        (list(TABLES),),
    ).fetchall()
    for name, _ in rows:
        conn.execute(f"DROP INDEX {name}")
    return [definition for _, definition in rows]


# -- measuring ---------------------------------------------------------------------------------------------------


class Timed:
    """WSGI middleware: the time inside the app for each request, the response body included."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.last = 0.0
        self.last_cpu = 0.0  # this thread's CPU time: the request's own work, whatever else the machine runs

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started, cpu = time.perf_counter(), time.thread_time()
        result = self.app(environ, start_response)
        try:
            body = list(result)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
        self.last = time.perf_counter() - started
        self.last_cpu = time.thread_time() - cpu
        return body


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU time of processes (PostgreSQL backends), from /proc: 10 ms ticks, so averaged over many."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


class Statements:
    """Every SQL statement the app sends, with its parameters, while recording."""

    def __init__(self) -> None:
        self.recording: list[tuple[str, Any]] | None = None

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.recording is not None:
            self.recording.append((statement, parameters))


@dataclass
class Measured:
    name: str
    server: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    statements: int = 0
    note: str = ""
    # Mean CPU per request, ms: the web process's thread, its PostgreSQL backends, the raw replay's backend.
    web_cpu: float = 0.0
    db_cpu: float = 0.0
    raw_db_cpu: float = 0.0


def measure(
    url: str, filled: Filled, requests: int, seed: int, only: str = "", explain: bool = False
) -> list[Measured]:
    os.environ.update(DATABASE_URL=url, DESKBELL_ENV="development", SECRET_KEY=secrets.token_urlsafe(32))
    os.environ.setdefault("DESKBELL_DATA", tempfile.mkdtemp(prefix="bench-console-"))
    os.environ.pop("NATS_URL", None)
    from sqlalchemy import event

    from desk.db import engine
    from web import create_app

    app = create_app({"WTF_CSRF_ENABLED": True})
    timer = Timed(app.wsgi_app)
    app.wsgi_app = timer  # type: ignore[method-assign]
    statements = Statements()
    event.listen(engine(None), "before_cursor_execute", statements)  # the engine the app's sessions use
    client = app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"email": filled.login_email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code in (200, 302), response.status_code

    with psycopg.connect(url) as raw:
        counts = dict(
            raw.execute(
                "SELECT q, (SELECT count(*) FROM messages WHERE to_tsvector('simple', body) @@ "
                "websearch_to_tsquery('simple', q)) FROM unnest(%s::text[]) q",
                (["order", "refund", "invoice", "warranty", "kelvaro"],),
            ).fetchall()
        )
    print("messages containing: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
    pages = console_pages(filled, seed)
    words = [
        ("order", "very common word"),
        ("refund", "common word"),
        ("warranty", "less common word"),
        ("refu", "prefix"),
        ("refund invoice", "two words"),
        ("lovelace", "visitor name"),
        ("退款", "Chinese, ILIKE"),
    ]
    for q, _ in words:
        pages.append((f"GET /console/search?q={q}", lambda q=q: "/console/search?q=" + q))
    results = []
    raw = psycopg.connect(url, autocommit=True)
    if raw.execute("SELECT to_regrole('deskbell_app') IS NOT NULL").fetchone()[0]:
        raw.execute("SET ROLE deskbell_app")  # as the app runs: under row-level security
    raw.autocommit = False
    raw_pid = raw.info.backend_pid
    app_backends = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    for name, next_url in pages:
        if only not in name:
            continue
        found = Measured(name)
        for _ in range(10):  # warm-up
            client.get(next_url())
        recorded: list[list[tuple[str, Any]]] = []
        db_before = cpu_seconds(pid for (pid,) in raw.execute(app_backends))
        web_cpu = 0.0
        for _ in range(requests):
            path = next_url()
            statements.recording = []
            response = client.get(path)
            recorded.append(statements.recording)
            statements.recording = None
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code}\n{response.get_data(as_text=True)[:2000]}")
            found.server.append(timer.last * 1000)
            web_cpu += timer.last_cpu
        db_after = cpu_seconds(pid for (pid,) in raw.execute(app_backends))
        raw.rollback()
        raw_before = cpu_seconds([raw_pid])
        found.raw = [replay(raw, one) * 1000 for one in recorded]
        found.statements = len(recorded[-1])
        found.web_cpu = web_cpu * 1000 / requests
        found.db_cpu = cpu_used(db_before, db_after) * 1000 / requests
        found.raw_db_cpu = cpu_used(raw_before, cpu_seconds([raw_pid])) * 1000 / requests
        if "search" in name:
            body = response.get_data(as_text=True)
            hits = [body.count(f'class="hit {kind}-hit"') for kind in ("message", "visitor")]
            found.note = f"{hits[0]} message and {hits[1]} visitor hits"
        results.append(found)
        report(found)
        if explain:
            print_plans(raw, recorded[-1])
    raw.close()
    return results


def console_pages(filled: Filled, seed: int) -> list[tuple[str, Callable[[], str]]]:
    rng = random.Random(seed)
    return [
        ("GET /console", lambda: "/console"),
        ("GET /console/conversations?view=mine", lambda: "/console/conversations?view=mine"),
        ("GET /console/conversations?view=unassigned", lambda: "/console/conversations?view=unassigned"),
        ("GET /console/conversations?view=all", lambda: "/console/conversations?view=all"),
        # The worst list for an index: Unassigned of a status with no unassigned rows (resolved ones all have had
        # an agent), an empty page unless an index holds just the unassigned rows.
        (
            "GET /console/conversations?view=unassigned&status=resolved",
            lambda: "/console/conversations?view=unassigned&status=resolved",
        ),
        ("GET /console/c/<random id>", lambda: f"/console/c/{rng.choice(filled.conversations)}"),
    ]


def measure_http(url: str, filled: Filled, requests: int, seed: int, only: str = "") -> None:
    """End to end: `python -m web` (the Procfile's web process: Hypercorn, the ASGI app) on a port of its own,
    and an HTTP client on the same machine timing each response from sending the request to the body's last byte."""
    import httpx

    from desk.embedded import NatsServer, free_port
    from tests.conftest import Stack, wait_ready  # the test suite's process runner, as bench.load uses it

    base = Path(tempfile.mkdtemp(prefix="bench-console-http-"))
    nats = NatsServer(base / "nats").start()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "NATS_URL": nats.url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DESKBELL_ENV": "development",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DESKBELL_DATA": str(base / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    stack = Stack(base_url=f"http://127.0.0.1:{port}", env=env, log_dir=base)
    stack.start("web", f"{sys.executable} -m web")
    try:
        wait_ready(stack.base_url, timeout=60)
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            login_page = client.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)  # type: ignore[union-attr]
            response = client.post(
                "/login", data={"email": filled.login_email, "password": PASSWORD, "csrf_token": token}
            )
            assert response.status_code in (200, 302, 303), response.status_code
            for name, next_url in console_pages(filled, seed):
                if only not in name:
                    continue
                for _ in range(10):  # warm-up
                    client.get(next_url())
                times = []
                for _ in range(requests):
                    path = next_url()
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: {response.status_code}")
                print(f"{name} over HTTP ({len(response.content):,} bytes)")
                print(f"    end to end  median {statistics.median(times):6.1f}  p90 {percentile(times, 0.9):6.1f}  "
                      f"p99 {percentile(times, 0.99):6.1f} ms", flush=True)  # fmt: skip
    finally:
        stack.stop("web")
        nats.stop()


def replay(raw: psycopg.Connection[Any], recorded: list[tuple[str, Any]]) -> float:
    """The statements of one request, run with plain psycopg on one open connection, in one transaction."""
    started = time.perf_counter()
    with raw.cursor() as cur:
        savepoint = None
        for statement, parameters in recorded:
            if statement.startswith("SAVEPOINT "):
                savepoint = statement.split()[1]
            try:
                cur.execute(statement, parameters or None)
            except psycopg.errors.QueryCanceled:
                # The search's time limit, as in the app, which rolls back to its savepoint (a statement the
                # recording does not see).
                if savepoint:
                    cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                else:
                    raw.rollback()  # the Chinese search rolls back its whole transaction
                continue
            if cur.description is not None:
                cur.fetchall()
    raw.rollback()
    return time.perf_counter() - started


def print_plans(raw: psycopg.Connection[Any], recorded: list[tuple[str, Any]]) -> None:
    """EXPLAIN ANALYZE of each query of one request, as the app's role inside the request's transaction (so
    row-level security and the tenant setting apply). A sequential scan of a big table is flagged."""
    with raw.cursor() as cur:
        for statement, parameters in recorded:
            if not statement.lstrip().upper().startswith("SELECT") or "set_config(" in statement:
                cur.execute(statement, parameters or None)  # the tenant scope, savepoints: as the app ran them
                continue
            try:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters or None)
            except psycopg.errors.QueryCanceled:
                raw.rollback()
                print("    (cancelled by the statement time limit)")
                return
            plan = [line for (line,) in cur.fetchall()]
            big = [line.strip() for line in plan if re.search(rf"Seq Scan on ({'|'.join(TABLES)})\b", line)]
            print("    " + " ".join(statement.split())[:160])
            print("        " + "\n        ".join(plan))
            if big:
                print(f"    ^ SEQUENTIAL SCAN: {'; '.join(big)}")
    raw.rollback()


def report(m: Measured) -> None:
    def figures(values: list[float]) -> str:
        return (
            f"median {statistics.median(values):6.1f}  p90 {percentile(values, 0.9):6.1f}  "
            f"p99 {percentile(values, 0.99):6.1f}"
        )

    print(f"{m.name}" + (f"  [{m.note}]" if m.note else ""))
    print(f"    server  {figures(m.server)} ms; CPU per request: web {m.web_cpu:.1f}, PostgreSQL {m.db_cpu:.1f} ms")
    print(f"    raw SQL {figures(m.raw)} ms ({m.statements} statements); CPU per request: PostgreSQL "
          f"{m.raw_db_cpu:.1f} ms", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="", help="measure only the URLs whose name contains this, e.g. search")
    parser.add_argument(
        "--http", action="store_true", help="also time the console's pages end to end, over HTTP from `python -m web`"
    )
    parser.add_argument("--explain", action="store_true", help="print the EXPLAIN ANALYZE of each URL's queries")
    parser.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME} afterwards")
    parser.add_argument("--reuse", action="store_true", help=f"measure a kept {DB_NAME} again without filling it")
    parser.add_argument(
        "--leakproof",
        action="store_true",
        help="mark the functions of the search indexes' expressions LEAKPROOF in this database, so row-level "
        "security lets the indexes serve (docs/benchmarks.md explains)",
    )
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    from desk import migrate
    from desk.embedded import ensure_database

    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if exists and not args.reuse:
            conn.execute(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)')
    url = ensure_database(server, DB_NAME)
    try:
        if args.reuse and exists:
            migrate.upgrade(url)  # newer code may have added a migration since
            filled = reload_filled(url)
        else:
            migrate.upgrade(url)
            filled = fill(url, args.conversations, args.messages, args.seed)
        with psycopg.connect(url) as conn:
            sizes = conn.execute(
                "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages), "
                "pg_size_pretty(pg_database_size(current_database())), current_setting('server_version'), "
                "current_setting('shared_buffers')"
            ).fetchone()
        print(f"{sizes[0]:,} conversations, {sizes[1]:,} messages, database {sizes[2]}; PostgreSQL {sizes[3]}, "
              f"shared_buffers {sizes[4]}; {args.requests} requests per URL, after 10 warm-up", flush=True)  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            for function in LEAKPROOF:
                conn.execute(f"ALTER FUNCTION {function} {'' if args.leakproof else 'NOT '}LEAKPROOF")
        print(f"{', '.join(LEAKPROOF)}: {'' if args.leakproof else 'not '}leakproof", flush=True)
        load = os.getloadavg()
        measure(url, filled, args.requests, args.seed, args.only, args.explain)
        if args.http:
            measure_http(url, filled, args.requests, args.seed, args.only)
        print(f"load average (1 min) {load[0]:.1f} before measuring, {os.getloadavg()[0]:.1f} after: the machine is "
              "shared, so compare with the raw SQL figures of the same run", flush=True)  # fmt: skip
    finally:
        from desk.db import engine

        if os.environ.get("DATABASE_URL") == url:
            engine().dispose()
        if not args.keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            print(f"dropped {DB_NAME} (--keep keeps it)")


def reload_filled(url: str) -> Filled:
    with psycopg.connect(url) as conn:
        tenant_id = conn.execute("SELECT id FROM tenants WHERE slug = 'bench'").fetchone()[0]
        ids = [row[0] for row in conn.execute("SELECT id FROM conversations ORDER BY created_at")]
    global PASSWORD
    PASSWORD = "bench-reused"
    with psycopg.connect(url) as conn:  # a known password again: the first run's was random
        from desk.accounts import hash_password

        conn.execute(
            "UPDATE users SET password_hash = %s WHERE email = 'agent0@bench.test'", (hash_password(PASSWORD),)
        )
    return Filled(tenant_id, "agent0@bench.test", ids)


if __name__ == "__main__":
    sys.exit(main())
