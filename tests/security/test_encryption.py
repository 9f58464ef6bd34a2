"""Encryption at rest (issue 7; docs/operations.md, "Encryption at rest"): with it on, message bodies and visitors'
names and emails read straight from PostgreSQL (as `psql` would) are not readable, the product works as before
(a visitor's message and an agent's reply, through the real path, read back in the console and the widget), and
`deskbell rotate-keys` leaves everything readable under the new key and nothing under the old one.

The sealed product runs as its own web and worker processes, with its own nats-server, so that no process without
the keys ever stores one of its messages.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from honcho.environ import parse_procfile
from sqlalchemy import select

from desk import crypto
from desk.db import system_session, tenant_session
from desk.embedded import NatsServer, free_port
from desk.models import Conversation, Message, Site, Tenant
from desk.settings import ROOT
from tests.clients import Visitor as WidgetVisitor
from tests.clients import logged_in_agent
from tests.conftest import Stack, wait_ready
from tests.security.test_signed_api import call, new_key

K1 = base64.b64encode(os.urandom(32)).decode()
K2 = base64.b64encode(os.urandom(32)).decode()
SEALED_ENV = {"DESKBELL_ENCRYPTION_KEYS": f"k1:{K1}", "DESKBELL_ENCRYPTION_ACTIVE": "k1"}
SECRET = "kumquat-" + uuid.uuid4().hex[:8]  # a word in every text written here; no raw read may show it


# -- the keyring ---------------------------------------------------------------------------------------------------


def ring(active: str | None = "k1") -> crypto.Keyring:
    return crypto.Keyring({"k1": base64.b64decode(K1), "k2": base64.b64decode(K2)}, active)


def test_a_value_is_sealed_with_its_key_id_and_opens_only_in_its_own_column() -> None:
    sealed = ring().seal("Ada's card ends 4242", "messages.body")
    assert sealed.startswith("enc:v1:k1:") and "4242" not in sealed
    assert ring("k2").open(sealed, "messages.body") == "Ada's card ends 4242"  # any known key id reads
    assert ring().seal("same", "messages.body") != ring().seal("same", "messages.body")  # a fresh nonce each time
    with pytest.raises(crypto.Unreadable):
        ring().open(sealed, "visitors.name")  # copied into another column
    with pytest.raises(crypto.Unreadable):
        crypto.Keyring({"k2": base64.b64decode(K2)}, "k2").open(sealed, "messages.body")  # k1 is gone
    tampered = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(crypto.Unreadable):
        ring().open(tampered, "messages.body")


def test_plain_text_that_looks_sealed_is_kept_as_written_with_encryption_off() -> None:
    off = ring(active=None)
    for text in ["hello", "enc:v1:k1:AAAA", "enc:raw:x", ""]:
        assert off.open(off.seal(text, "messages.body"), "messages.body") == text
    assert off.seal("hello", "messages.body") == "hello"  # off: what is stored is the text itself


def test_a_bad_key_setting_stops_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from desk import settings

    for keys, active in [
        ("k1:not-base64!", ""),
        ("k1:" + base64.b64encode(b"short").decode(), ""),
        (f"k1:{K1}", "k9"),
        (f"k1:{K1},k1:{K2}", ""),
        (f"bad id:{K1}", ""),
    ]:
        monkeypatch.setenv("DESKBELL_ENCRYPTION_KEYS", keys)
        monkeypatch.setenv("DESKBELL_ENCRYPTION_ACTIVE", active)
        with pytest.raises(RuntimeError, match="DESKBELL_ENCRYPTION"):
            settings.load()
    monkeypatch.setenv("DESKBELL_ENCRYPTION_KEYS", f"k1:{K1}, k2:{K2}")
    monkeypatch.setenv("DESKBELL_ENCRYPTION_ACTIVE", "k2")
    assert settings.load().encryption.active == "k2"


# -- the sealed product --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """release, web and worker from the Procfile with encryption on, on a nats-server of their own."""
    nats = NatsServer(tmp_path_factory.mktemp("sealed-nats")).start()
    port = free_port()
    env = dict(os.environ)
    env.update(
        SEALED_ENV,
        DATABASE_URL=database_url,
        NATS_URL=nats.url,
        PORT=str(port),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DESKBELL_DATA=str(tmp_path_factory.mktemp("sealed-data")),
        PYTHONUNBUFFERED="1",
    )
    procfile = parse_procfile((ROOT / "Procfile").read_text()).processes
    subprocess.run(procfile["release"], shell=True, env=env, cwd=ROOT, check=True)
    running = Stack(base_url=f"http://127.0.0.1:{port}", env=env, log_dir=tmp_path_factory.mktemp("sealed-logs"))
    running.start("web", procfile["web"])
    running.start("worker", procfile["worker"])
    try:
        wait_ready(running.base_url, timeout=90)  # a loaded machine can take a while to start three processes
        yield running
    finally:
        for name in list(running.processes):
            running.stop(name)
        nats.stop()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test process reads with the sealed product's keys (as `deskbell` commands on its servers would)."""
    monkeypatch.setenv("DESKBELL_ENCRYPTION_KEYS", f"k1:{K1},k2:{K2}")
    monkeypatch.setenv("DESKBELL_ENCRYPTION_ACTIVE", "k1")
    crypto.keyring.cache_clear()
    yield
    monkeypatch.undo()
    crypto.keyring.cache_clear()


def psql(database_url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows as an operator with `psql` sees them: the login role, no application code in between."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, args).fetchall()


def chat(stack: Stack, tenant: dict[str, Any]) -> dict[str, Any]:
    """A visitor (identified by name and email) writes, an agent answers in the console, the visitor sees it."""

    async def visitor_side(agent: Any) -> dict[str, Any]:
        visitor = WidgetVisitor(stack.base_url, str(tenant["site_key"]))
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "m1", "body": f"My {SECRET} order is late"})
        ack = await visitor.expect("ack")
        reply = await asyncio.to_thread(agent.reply, ack["conversation_id"], f"Your {SECRET} order ships today")
        assert reply.status_code == 200, reply.text
        while SECRET not in (frame := await visitor.expect("message"))["body"] or frame["sender"] != "agent":
            pass
        await visitor.close()
        return {"conversation_id": ack["conversation_id"], "visitor_id": visitor.visitor_id, "reply": frame}

    agent = logged_in_agent(stack.base_url, tenant)
    seen = asyncio.run(visitor_side(agent))
    seen["agent"] = agent
    return seen


def tenant_of(site_key: str) -> uuid.UUID:
    with system_session() as session:
        return session.scalars(select(Site.tenant_id).where(Site.site_key == site_key)).one()


def test_with_encryption_on_the_product_works_and_postgresql_holds_no_readable_text(
    sealed: Stack, database_url: str, keys: None
) -> None:
    tenant = sealed.bootstrap("agent")
    seen = chat(sealed, tenant)
    tenant_id = tenant_of(str(tenant["site_key"]))
    # The visitor's name and email, set by the tenant's server through the signed API.
    patched = call(
        sealed.base_url,
        new_key(tenant_id),
        "PATCH",
        f"/api/v1/visitors/{seen['visitor_id']}",
        {"name": f"Ada {SECRET}", "email": f"{SECRET}@example.test"},
    )
    assert patched.status_code == 200 and patched.json()["name"] == f"Ada {SECRET}"

    # The widget and the console show the text.
    assert seen["reply"]["body"] == f"Your {SECRET} order ships today"
    thread = seen["agent"].thread(seen["conversation_id"])
    assert thread == [f"My {SECRET} order is late", f"Your {SECRET} order ships today"]
    assert f"Ada {SECRET}" in seen["agent"].conversation_page(seen["conversation_id"])

    # PostgreSQL does not.
    conversation = uuid.UUID(seen["conversation_id"])
    bodies = psql(database_url, "SELECT body FROM messages WHERE conversation_id = %s", conversation)
    previews = psql(database_url, "SELECT last_message_preview FROM conversations WHERE id = %s", conversation)
    people = psql(database_url, "SELECT name, email FROM visitors WHERE id = %s", uuid.UUID(seen["visitor_id"]))
    stored = [v for row in bodies + previews + people for v in row]
    assert len(stored) == 5
    assert all(v.startswith("enc:v1:k1:") and SECRET not in v for v in stored), stored
    dump = psql(database_url, "SELECT string_agg(body, ' ') FROM messages")[0][0]
    assert SECRET not in dump

    # Search cannot look into sealed text: it says so instead of finding nothing silently.
    from desk.queries import search

    with tenant_session(tenant_id) as session:
        results = search.search(session, search.parse(SECRET))
    assert results.sealed and results.messages == []


def test_rotation_leaves_everything_readable_under_the_new_key_and_nothing_under_the_old(
    sealed: Stack, database_url: str, keys: None
) -> None:
    tenant = sealed.bootstrap("agent")
    seen = chat(sealed, tenant)
    tenant_id = tenant_of(str(tenant["site_key"]))
    with system_session() as session:
        slug = session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
        before = crypto.census(session, tenant_id)
    assert before["messages.body"] == {"k1": 2}

    env = {**sealed.env, "DESKBELL_ENCRYPTION_KEYS": f"k1:{K1},k2:{K2}", "DESKBELL_ENCRYPTION_ACTIVE": "k2"}
    rotated = subprocess.run(
        [sys.executable, "-m", "desk.cli", "rotate-keys", "--tenant", slug, "--batch-size", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "Re-encrypting to key k2" in rotated.stderr  # the progress bar's label
    assert "messages.body: k2 2" in rotated.stdout

    with system_session() as session:
        after = crypto.census(session, tenant_id)
    assert all(set(counts) <= {"k2"} for counts in after.values()), after
    assert sum(sum(c.values()) for c in after.values()) == sum(sum(c.values()) for c in before.values())

    # Readable with k2 alone: k1 can go.
    with pytest.MonkeyPatch.context() as only_k2:
        only_k2.setenv("DESKBELL_ENCRYPTION_KEYS", f"k2:{K2}")
        only_k2.setenv("DESKBELL_ENCRYPTION_ACTIVE", "k2")
        crypto.keyring.cache_clear()
        with tenant_session(tenant_id) as session:
            bodies = session.scalars(
                select(Message.body).where(Message.conversation_id == uuid.UUID(seen["conversation_id"]))
            ).all()
            preview = session.get(Conversation, uuid.UUID(seen["conversation_id"])).last_message_preview
    crypto.keyring.cache_clear()
    assert sorted(bodies) == [f"My {SECRET} order is late", f"Your {SECRET} order ships today"]
    assert preview == f"Your {SECRET} order ships today"

    # Run again: nothing left to do. Then back to plain text (encryption switched off), also resumable.
    again = subprocess.run(
        [sys.executable, "-m", "desk.cli", "rotate-keys", "--tenant", slug, "--quiet"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "0 value(s) rewritten" in again.stderr
    plain = {**env, "DESKBELL_ENCRYPTION_ACTIVE": ""}
    back = subprocess.run(
        [sys.executable, "-m", "desk.cli", "rotate-keys", "--tenant", slug, "--quiet"],
        env=plain,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert back.returncode == 0, back.stderr
    rows = psql(
        database_url, "SELECT body FROM messages WHERE conversation_id = %s", uuid.UUID(seen["conversation_id"])
    )
    assert sorted(r[0] for r in rows) == [f"My {SECRET} order is late", f"Your {SECRET} order ships today"]


def test_rotation_without_the_old_key_leaves_those_values_and_says_which_key_is_missing(
    sealed: Stack, database_url: str, keys: None
) -> None:
    tenant = sealed.bootstrap("agent")
    chat(sealed, tenant)
    tenant_id = tenant_of(str(tenant["site_key"]))
    with system_session() as session:
        slug = session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
    env = {**sealed.env, "DESKBELL_ENCRYPTION_KEYS": f"k2:{K2}", "DESKBELL_ENCRYPTION_ACTIVE": "k2"}
    run = subprocess.run(
        [sys.executable, "-m", "desk.cli", "rotate-keys", "--tenant", slug, "--quiet"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "messages.body: k1 2" in run.stdout and "no configured key opens" in run.stderr
    with system_session() as session:
        assert crypto.census(session, tenant_id)["messages.body"] == {"k1": 2}  # untouched, not lost
    # A server without k1 shows what it cannot read as such, and says which key it lacks, instead of failing.
    with pytest.MonkeyPatch.context() as only_k2:
        only_k2.setenv("DESKBELL_ENCRYPTION_KEYS", f"k2:{K2}")
        only_k2.setenv("DESKBELL_ENCRYPTION_ACTIVE", "k2")
        crypto.keyring.cache_clear()
        with tenant_session(tenant_id) as session:
            shown = session.scalars(select(Message.body)).all()
    crypto.keyring.cache_clear()
    assert shown == [crypto.UNREADABLE.format(kid="k1")] * 2


def test_an_export_holds_plain_text_and_an_import_encrypts_it_again(
    sealed: Stack, database_url: str, keys: None, tmp_path: Path
) -> None:
    import json
    import secrets
    import tarfile

    from desk import migrate
    from desk.embedded import ensure_database

    tenant = sealed.bootstrap("agent")
    seen = chat(sealed, tenant)
    tenant_id = tenant_of(str(tenant["site_key"]))
    with system_session() as session:
        slug = str(session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id)))

    def deskbell(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        env = {**sealed.env, "DATABASE_URL": url}
        return subprocess.run(
            [sys.executable, "-m", "desk.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True
        )

    out = tmp_path / "sealed.tar.gz"
    exported = deskbell("export", "--tenant", slug, "--out", str(out), "--quiet", url=database_url)
    assert exported.returncode == 0, exported.stderr
    with tarfile.open(out) as tar:
        lines = tar.extractfile("tables/messages.jsonl").read().decode().splitlines()  # type: ignore[union-attr]
    assert sorted(json.loads(line)["body"] for line in lines) == [
        f"My {SECRET} order is late",
        f"Your {SECRET} order ships today",
    ]

    name = f"deskbell_sealed_{os.getpid()}_{secrets.token_hex(3)}"
    there = ensure_database(database_url, name)
    try:
        migrate.upgrade(there)
        imported = deskbell("import", str(out), "--quiet", url=there)
        assert imported.returncode == 0, imported.stderr
        bodies = psql(there, "SELECT body FROM messages WHERE conversation_id = %s", uuid.UUID(seen["conversation_id"]))
        assert len(bodies) == 2 and all(b.startswith("enc:v1:k1:") and SECRET not in b for (b,) in bodies)
        with tenant_session(tenant_id, url=there) as session:
            readable = session.scalars(select(Message.body).order_by(Message.seq)).all()
        assert readable == [f"My {SECRET} order is late", f"Your {SECRET} order ships today"]
    finally:
        from desk.db import engine

        engine(there).dispose()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Interrupted(Exception):
    pass


class StopsAfter:
    """A progress bar whose operator presses Ctrl-C after `batches` batches."""

    def __init__(self, batches: int) -> None:
        self.left = batches

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self.left -= 1
        if self.left <= 0:
            raise Interrupted

    def finish(self) -> None:
        pass


def test_an_interrupted_rotation_loses_nothing_and_the_next_run_finishes_it(database_url: str, keys: None) -> None:
    from tests.factories import new_conversation, new_tenant

    tenant_id = new_tenant()
    for _ in range(3):
        new_conversation(tenant_id)  # this process has k1 active: stored sealed with k1
    with system_session() as session:
        assert crypto.census(session, tenant_id)["messages.body"] == {"k1": 3}
        with pytest.raises(Interrupted):
            crypto.rotate(session, ring("k2"), StopsAfter(2), batch=1, tenant_id=tenant_id)
        session.rollback()
        halfway = crypto.census(session, tenant_id)["messages.body"]
        assert halfway == {"k1": 1, "k2": 2}  # each batch committed: some old, some new, none lost
        crypto.rotate(session, ring("k2"), crypto.NoProgress(), batch=1, tenant_id=tenant_id)
        assert all(set(c) <= {"k2"} for c in crypto.census(session, tenant_id).values())
    with tenant_session(tenant_id) as session:
        assert session.scalars(select(Message.body)).all() == ["Hello?"] * 3
