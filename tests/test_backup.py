"""The installation's backup and restore (docs/operations.md, "Export, import, backup"): `deskbell backup` of the
running product's database and data folder, `deskbell restore` into an empty database, and the console on the
restored installation."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from honcho.environ import parse_procfile
from sqlalchemy import select

from desk import settings
from desk.attachments import do_store_attachment
from desk.db import system_session, tenant_session
from desk.embedded import ensure_database, free_port
from desk.models import Base, Conversation, Tenant
from desk.settings import ROOT
from tests.clients import Agent
from tests.conftest import Stack, wait_ready
from tests.factories import new_conversation
from tests.test_attachments import tiny_png
from tests.test_export import deskbell


@dataclass
class BackedUp:
    folder: Path
    manifest: dict[str, object]
    logins: dict[str, object]
    conversation_id: str
    attachment_url: str


@pytest.fixture(scope="module")
def backed_up(stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> BackedUp:
    """The running product with a tenant, a conversation and an attached file, backed up."""
    made = stack.bootstrap("ana")
    data_dir = Path(stack.env["DESKBELL_DATA"])
    with system_session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == made["tenant"]))
    conversation_id = new_conversation(tenant_id)
    with tenant_session(tenant_id) as session:
        visitor_id = session.scalar(select(Conversation.visitor_id).where(Conversation.id == conversation_id))
        limits = settings.Limits()
        attachment = do_store_attachment(
            session,
            data_dir,
            tenant_id=tenant_id,
            visitor_id=visitor_id,
            name="photo.png",
            data=tiny_png(),
            max_bytes=limits.upload_bytes,
            allowed_types=limits.upload_types,
            per_hour=None,
        )
    folder = tmp_path_factory.mktemp("backups") / "nightly"

    done = deskbell("backup", "--out", str(folder), database_url=database_url, data_dir=data_dir)

    assert done.returncode == 0, done.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    url = f"/attachments/{attachment.id}/{attachment.filename}"
    return BackedUp(folder, manifest, made, str(conversation_id), url)


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the same server, as an operator makes one to restore into."""
    name = f"deskbell_restore_{os.getpid()}_{secrets.token_hex(3)}"
    yield ensure_database(database_url, name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def web_on(stack: Stack, **settings_: str) -> Iterator[str]:
    """One more `web` process from the Procfile on other settings (here: the restored installation), until it
    answers /readyz; like Stack.another_web, with a start slow enough for a busy machine."""
    port = free_port()
    name = f"web-restored-{port}"
    stack.start(
        name,
        parse_procfile((ROOT / "Procfile").read_text()).processes["web"],
        env={**stack.env, "PORT": str(port), **settings_},
    )
    try:
        try:
            wait_ready(f"http://127.0.0.1:{port}", timeout=90)
        except TimeoutError:
            pytest.fail("the web process on the restored installation did not start:\n" + stack.logs())
        yield f"http://127.0.0.1:{port}"
    finally:
        stack.stop(name)


def row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            t.name: conn.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]  # type: ignore[index]
            for t in Base.metadata.sorted_tables
        }


def test_a_backup_holds_the_database_the_files_and_a_manifest(backed_up: BackedUp, database_url: str) -> None:
    folder, manifest = backed_up.folder, backed_up.manifest

    assert (folder / "database.dump").read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    names = [f["name"] for f in manifest["files"]]  # type: ignore[index,union-attr]
    attachment_id = backed_up.attachment_url.split("/")[2]
    assert [n for n in names if n.startswith("attachments/") and n.endswith(f"/{attachment_id}")]
    assert all((folder / "data" / name).is_file() for name in names)
    assert not [n for n in names if n.split("/")[0] in ("pg", "nats")]
    tables = manifest["tables"]
    assert isinstance(tables, dict) and set(tables) == {t.name for t in Base.metadata.sorted_tables}
    with psycopg.connect(database_url) as conn:
        assert manifest["migration_revision"] == conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]  # type: ignore[index]


def test_a_restored_backup_has_the_same_rows_and_the_console_shows_the_same_conversation(
    backed_up: BackedUp, stack: Stack, empty_database: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "restored-data"

    done = deskbell("restore", str(backed_up.folder), database_url=empty_database, data_dir=data_dir)

    assert done.returncode == 0, done.stderr
    assert row_counts(empty_database) == backed_up.manifest["tables"]
    [ana] = backed_up.logins["agents"]  # type: ignore[misc]
    with web_on(stack, DATABASE_URL=empty_database, DESKBELL_DATA=str(data_dir)) as restored:
        agent = Agent(restored)
        assert agent.login(ana["email"], ana["password"]).status_code == 200
        assert agent.thread(backed_up.conversation_id) == ["Hello?"]
        picture = agent.client.get(backed_up.attachment_url)
        assert picture.status_code == 200 and picture.content == tiny_png()


def test_restore_refuses_a_database_with_tables_and_a_changed_backup(
    backed_up: BackedUp, database_url: str, empty_database: str, tmp_path: Path
) -> None:
    into_used = deskbell("restore", str(backed_up.folder), database_url=database_url, data_dir=tmp_path)
    changed = tmp_path / "changed"
    shutil.copytree(backed_up.folder, changed)
    with (changed / "database.dump").open("r+b") as dump:
        dump.seek(-100, os.SEEK_END)
        dump.write(b"x")
    tampered = deskbell("restore", str(changed), database_url=empty_database, data_dir=tmp_path)

    assert into_used.returncode == 1
    assert "restore needs an empty database" in into_used.stderr
    assert tampered.returncode == 1
    assert "database.dump does not match its SHA-256" in tampered.stderr
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0  # type: ignore[index]
