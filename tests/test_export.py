"""Taking a tenant out and putting it back (docs/operations.md, "Export, import, backup"): `deskbell export` and
`deskbell import` as an operator runs them, between two databases on the same server, and an admin's download of
conversations from the admin panel."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from desk import cli, migrate, settings
from desk.actions.canned import do_create_canned
from desk.actions.conversations import do_add_label, do_add_note, do_assign
from desk.actions.messages import Inbound, do_store_messages
from desk.actions.tenants import do_bootstrap_tenant
from desk.archive.tables import tenant_tables
from desk.attachments import do_store_attachment
from desk.db import system_session, tenant_session
from desk.embedded import ensure_database
from desk.models import AuditLog, Conversation, Message, Site, Tenant, User, Visitor
from tests.clients import Agent
from tests.conftest import Stack
from tests.factories import bulk_conversations, new_agent, new_conversation, new_team, new_tenant
from tests.test_attachments import PDF, tiny_png

BULK = 10_000
START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def deskbell(*args: str, database_url: str, data_dir: Path) -> Ran:
    """The `deskbell` command with `args`, against `database_url` and the data folder `data_dir`: the same click
    command an operator runs, in this process (a new Python for each would cost seconds a run)."""
    result = CliRunner().invoke(
        cli.main, list(args), env={"DATABASE_URL": database_url, "DESKBELL_DATA": str(data_dir)}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def repack(archive: Path, out: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of `archive` with `change` applied to its members (name -> bytes), as someone editing it would."""
    files = members(archive)
    change(files)
    with tarfile.open(out, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def checksum(database_url: str) -> dict[str, tuple[int, str]]:
    """Rows and an MD5 of every tenant table's rows, and the sequences' positions: what "changes nothing" compares."""
    with psycopg.connect(database_url) as conn:
        sums = {
            t.name: conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t.name} x"
            ).fetchone()
            for t in tenant_tables()
        }
        for seq in ("messages_id_seq", "conversation_events_id_seq", "audit_log_id_seq"):
            sums[seq] = conn.execute(f"SELECT last_value, '' FROM {seq}").fetchone()
    return sums


@pytest.fixture(scope="module")
def fresh_database(database_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty, migrated databases on the test server ("another installation"); dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"deskbell_import_{os.getpid()}_{secrets.token_hex(3)}"
        url = ensure_database(database_url, name)
        made.append(name)
        migrate.upgrade(url)
        return url

    yield make
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Source:
    tenant_id: uuid.UUID
    slug: str
    data_dir: Path
    conversation_id: uuid.UUID
    attachments: dict[uuid.UUID, bytes]


@pytest.fixture(scope="module")
def source(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A tenant with 10,000 conversations from SQL, and one of each kind of thing made by the real actions: a
    conversation from the store action, a note, an assignment and a label, a team, a shared saved reply, two
    attached files under the data folder."""
    data_dir = tmp_path_factory.mktemp("source-data")
    tenant_id = new_tenant()
    agent_id = new_agent(tenant_id)
    team_id = new_team(tenant_id, "Support", agent_id)
    conversation_id = new_conversation(tenant_id)
    files: dict[uuid.UUID, bytes] = {}
    with tenant_session(tenant_id) as session:
        slug = session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
        owner_id = session.scalar(select(User.id).where(User.role == "owner"))
        visitor_id = session.scalar(select(Conversation.visitor_id).where(Conversation.id == conversation_id))
        do_store_messages(session, [Inbound(visitor_id, "second", "Two files attached")])
        session.commit()
        do_assign(session, conversation_id, owner_id, agent_id)
        do_add_note(session, conversation_id, agent_id, "Called them back; they're fine.")
        do_add_label(session, conversation_id, agent_id, "vip")
        do_create_canned(session, owner_id, "thanks", "Thanks for writing to us!", shared=True)
        limits = settings.Limits()
        for name, data in (("photo.png", tiny_png()), ("invoice.pdf", PDF)):
            stored = do_store_attachment(
                session,
                data_dir,
                tenant_id=tenant_id,
                visitor_id=visitor_id,
                name=name,
                data=data,
                max_bytes=limits.upload_bytes,
                allowed_types=limits.upload_types,
                per_hour=None,
            )
            files[stored.id] = data
    bulk_conversations(tenant_id, BULK, start=START, every=timedelta(minutes=50), agent_id=agent_id, team_id=team_id)
    return Source(tenant_id, str(slug), data_dir, conversation_id, files)


@pytest.fixture(scope="module")
def archive(source: Source, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("archives") / f"{source.slug}.tar.gz"
    began = time.monotonic()
    done = deskbell(
        "export", "--tenant", source.slug, "--out", str(out), database_url=database_url, data_dir=source.data_dir
    )
    print(f"\nexport of {BULK} conversations: {time.monotonic() - began:.1f}s, {out.stat().st_size} bytes")
    assert done.returncode == 0, done.stderr
    return out


@dataclass
class Installation:
    database_url: str
    data_dir: Path


@pytest.fixture(scope="module")
def imported(
    archive: Path, fresh_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Installation, Ran]:
    """Another installation, with the archive imported once."""
    there = Installation(fresh_database(), tmp_path_factory.mktemp("imported-data"))
    began = time.monotonic()
    done = deskbell("import", str(archive), database_url=there.database_url, data_dir=there.data_dir)
    print(f"\nimport of {BULK} conversations: {time.monotonic() - began:.1f}s")
    return there, done


# -- export ----------------------------------------------------------------------------------------------------------


def test_an_archive_holds_every_tenant_table_and_file_with_counts_and_checksums(
    archive: Path, source: Source, database_url: str
) -> None:
    files = members(archive)
    manifest = json.loads(files["manifest.json"])
    assert archive.stat().st_mode & 0o777 == 0o600  # it holds password hashes: the operator's alone

    assert manifest["tenant"] == {"id": str(source.tenant_id), "slug": source.slug, "name": source.slug}
    with psycopg.connect(database_url) as conn:
        assert manifest["migration_revision"] == conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert [t["name"] for t in manifest["tables"]] == [t.name for t in tenant_tables()]
    rows = {t["name"]: t["rows"] for t in manifest["tables"]}
    assert rows["conversations"] == BULK + 1
    assert rows["messages"] == 2 * BULK + 2
    assert rows["canned_responses"] == 1 and rows["team_members"] == 1 and rows["attachments"] == 2
    for table in manifest["tables"]:
        data = files[table["file"]]
        assert len(data.splitlines()) == table["rows"]
        assert hashlib.sha256(data).hexdigest() == table["sha256"]
    messages = [json.loads(line) for line in files["tables/messages.jsonl"].splitlines()]
    assert [m["id"] for m in messages] == sorted(m["id"] for m in messages)
    assert all(m["tenant_id"] == str(source.tenant_id) for m in messages)
    assert messages[-1]["created_at"].endswith("+00:00")
    assert {f["name"]: f["size"] for f in manifest["files"]} == {
        f"files/attachments/{id_}": len(data) for id_, data in source.attachments.items()
    }
    assert all(files[f"files/attachments/{id_}"] == data for id_, data in source.attachments.items())


def test_an_export_for_a_range_of_days_takes_those_conversations_and_all_the_settings(
    source: Source, database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "january.tar.gz"

    done = deskbell(
        "export",
        "--tenant",
        source.slug,
        "--out",
        str(out),
        "--since",
        "2025-01-10",
        "--until",
        "2025-01-19",
        "--quiet",
        database_url=database_url,
        data_dir=source.data_dir,
    )

    assert done.returncode == 0, done.stderr
    files = members(out)
    rows = {t["name"]: t["rows"] for t in json.loads(files["manifest.json"])["tables"]}
    # One conversation every 50 minutes from 2025-01-01: those created from 10 January to 19 January, inclusive.
    expected = sum(
        1
        for g in range(1, BULK + 1)
        if datetime(2025, 1, 10, tzinfo=UTC) <= START + g * timedelta(minutes=50) < datetime(2025, 1, 20, tzinfo=UTC)
    )
    assert rows["conversations"] == expected
    assert rows["messages"] == 2 * expected
    assert rows["users"] == 2 and rows["teams"] == 1 and rows["canned_responses"] == 1
    assert rows["attachments"] == 0  # the real conversation was made today, outside the range
    assert not [name for name in files if name.startswith("files/")]


def test_export_says_what_is_wrong_with_an_unknown_tenant_or_reversed_days(
    source: Source, database_url: str, tmp_path: Path
) -> None:
    out = str(tmp_path / "x.tar.gz")

    unknown = deskbell("export", "--tenant", "nobody-here", "--out", out, database_url=database_url, data_dir=tmp_path)
    reversed_days = deskbell(
        "export", "--tenant", source.slug, "--out", out, "--since", "2025-03-01", "--until", "2025-02-01",
        database_url=database_url, data_dir=tmp_path,
    )  # fmt: skip

    assert unknown.returncode == 1
    assert "no tenant with the slug 'nobody-here'" in unknown.stderr
    assert reversed_days.returncode == 2
    assert "2025-03-01 is after --until 2025-02-01" in reversed_days.stderr
    assert not (tmp_path / "x.tar.gz").exists()


# -- import ----------------------------------------------------------------------------------------------------------


def test_a_tenant_imported_into_a_fresh_database_exports_the_same_tables_and_files(
    archive: Path, imported: tuple[Installation, Ran], source: Source, tmp_path: Path
) -> None:
    there, done = imported
    assert done.returncode == 0, done.stderr
    assert "every row verified" in done.stdout

    again = tmp_path / "again.tar.gz"
    exported = deskbell(
        "export",
        "--tenant",
        source.slug,
        "--out",
        str(again),
        "--quiet",
        database_url=there.database_url,
        data_dir=there.data_dir,
    )

    assert exported.returncode == 0, exported.stderr
    before, after = members(archive), members(again)
    assert sorted(before) == sorted(after)
    for name in before:
        if name != "manifest.json":
            assert before[name] == after[name], f"{name} differs after the round trip"
    tables = [json.loads(m)["tables"] for m in (before["manifest.json"], after["manifest.json"])]
    assert tables[0] == tables[1]


def test_importing_the_same_archive_twice_changes_nothing_the_second_time(
    archive: Path, imported: tuple[Installation, Ran]
) -> None:
    there, _ = imported
    before = checksum(there.database_url)

    again = deskbell("import", str(archive), "--quiet", database_url=there.database_url, data_dir=there.data_dir)

    assert again.returncode == 0, again.stderr
    assert "0 rows added, 0 of 2 files copied" in again.stdout
    assert checksum(there.database_url) == before


def test_a_changed_archive_is_refused_before_anything_is_imported(
    archive: Path, imported: tuple[Installation, Ran], tmp_path: Path
) -> None:
    there, _ = imported
    before = checksum(there.database_url)

    def edit(files: dict[str, bytes]) -> None:
        files["tables/messages.jsonl"] = files["tables/messages.jsonl"].replace(b"on its way", b"on its wax", 1)

    done = deskbell(
        "import",
        str(repack(archive, tmp_path / "edited.tar.gz", edit)),
        database_url=there.database_url,
        data_dir=there.data_dir,
    )

    assert done.returncode == 1
    assert "tables/messages.jsonl does not match its SHA-256 in the manifest" in done.stderr
    assert "nothing was imported" in done.stderr
    assert checksum(there.database_url) == before


def test_an_archive_from_a_newer_migration_is_refused(
    archive: Path, imported: tuple[Installation, Ran], tmp_path: Path
) -> None:
    there, _ = imported

    def newer(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        manifest["migration_revision"] = "9999"
        files["manifest.json"] = json.dumps(manifest).encode()

    done = deskbell(
        "import",
        str(repack(archive, tmp_path / "newer.tar.gz", newer)),
        database_url=there.database_url,
        data_dir=there.data_dir,
    )

    assert done.returncode == 1
    assert "made at migration 9999, newer than this installation's" in done.stderr


def test_the_imported_tenant_works_in_its_new_installation(imported: tuple[Installation, Ran], source: Source) -> None:
    there, _ = imported  # (after the tests above: this one adds a message there)
    with tenant_session(source.tenant_id, url=there.database_url) as session:
        thread = session.scalars(
            select(Message.body).where(Message.conversation_id == source.conversation_id).order_by(Message.seq)
        ).all()
        [visitor_id] = session.scalars(
            select(Message.visitor_id).where(Message.conversation_id == source.conversation_id).distinct()
        ).all()
        # A new message gets the next seq and an id no imported message has: the sequences moved past them.
        [stored] = do_store_messages(session, [Inbound(visitor_id, "after-import", "Still there?")])
        session.commit()
        highest = session.scalar(
            select(Message.id).where(Message.id != stored.message.id).order_by(Message.id.desc()).limit(1)
        )
    assert thread == ["Hello?", "Two files attached"]
    assert stored.message.seq == 3 and stored.message.id > highest
    for attachment_id, data in source.attachments.items():
        assert (there.data_dir / "attachments" / str(source.tenant_id) / str(attachment_id)).read_bytes() == data


# -- into an installation with other tenants -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_archive(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Source, Path]:
    """A tenant with one conversation, exported."""
    data_dir = tmp_path_factory.mktemp("small-data")
    tenant_id = new_tenant()
    conversation_id = new_conversation(tenant_id)
    with system_session() as session:
        slug = str(session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id)))
    out = tmp_path_factory.mktemp("small") / "small.tar.gz"
    done = deskbell(
        "export", "--tenant", slug, "--out", str(out), "--quiet", database_url=database_url, data_dir=data_dir
    )
    assert done.returncode == 0, done.stderr
    return Source(tenant_id, slug, data_dir, conversation_id, {}), out


def bootstrap(url: str, slug: str, owner_email: str) -> uuid.UUID:
    with system_session(url=url) as session:
        do_bootstrap_tenant(
            session, slug=slug, name=slug, owner_email=owner_email, site_name="Site", allowed_origins=[]
        )
        return session.scalar(select(Tenant.id).where(Tenant.slug == slug))


@pytest.fixture(scope="module")
def elsewhere(
    small_archive: tuple[Source, Path], fresh_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Installation, int]:
    """Another installation: its own tenant has the small archive's slug, and a message with the id of the archive's
    first message (both installations count message ids from 1)."""
    small, out = small_archive
    first_id = json.loads(members(out)["tables/messages.jsonl"].splitlines()[0])["id"]
    there = Installation(fresh_database(), tmp_path_factory.mktemp("elsewhere-data"))
    local = bootstrap(there.database_url, small.slug, "owner@local.test")
    with psycopg.connect(there.database_url) as conn:  # where this installation's own messages have come to
        conn.execute("SELECT setval('messages_id_seq', %s, false)", (first_id,))
    with tenant_session(local, url=there.database_url) as session:
        visitor = Visitor(site_id=session.scalar(select(Site.id)))
        session.add(visitor)
        session.flush()
        [mine] = do_store_messages(session, [Inbound(visitor.id, "local-1", "A local message")])
        session.commit()
    assert mine is not None and mine.message.id == first_id
    return there, first_id


def test_a_slug_another_tenant_has_is_refused(
    small_archive: tuple[Source, Path], elsewhere: tuple[Installation, int]
) -> None:
    small, out = small_archive
    there, _ = elsewhere

    done = deskbell("import", str(out), "--quiet", database_url=there.database_url, data_dir=there.data_dir)

    assert done.returncode == 1
    assert f"the slug '{small.slug}' belongs to another tenant of this installation" in done.stderr
    assert "import with --slug NEW" in done.stderr
    with system_session(url=there.database_url) as session:
        assert session.get(Tenant, small.tenant_id) is None


def test_with_a_new_slug_it_is_imported_and_message_ids_taken_here_get_new_ones(
    small_archive: tuple[Source, Path], elsewhere: tuple[Installation, int]
) -> None:
    small, out = small_archive
    there, taken_id = elsewhere
    archived = [json.loads(line) for line in members(out)["tables/messages.jsonl"].splitlines()]

    first = deskbell("import", str(out), "--slug", "moved", database_url=there.database_url, data_dir=there.data_dir)
    before = checksum(there.database_url)
    second = deskbell(
        "import", str(out), "--slug", "moved", "--quiet", database_url=there.database_url, data_dir=there.data_dir
    )

    assert first.returncode == 0, first.stderr
    messages_line = next(line for line in first.stdout.splitlines() if line.startswith("messages "))
    assert messages_line.split() == ["messages", "1", "1", "0", "1", "1"]  # archived, added, present, new ids, verified
    assert second.returncode == 0, second.stderr
    assert "0 rows added" in second.stdout
    assert checksum(there.database_url) == before
    with system_session(url=there.database_url) as session:
        assert session.scalar(select(Tenant.slug).where(Tenant.id == small.tenant_id)) == "moved"
        assert session.get(Message, taken_id).body == "A local message"
        theirs = session.scalars(select(Message).where(Message.tenant_id == small.tenant_id)).all()
    assert [(m.body, m.seq, m.client_id) for m in theirs] == [(m["body"], m["seq"], m["client_id"]) for m in archived]
    assert taken_id not in {m.id for m in theirs}


def test_an_email_another_tenant_has_is_refused(
    small_archive: tuple[Source, Path], imported: tuple[Installation, Ran]
) -> None:
    small, out = small_archive
    there, _ = imported
    bootstrap(there.database_url, "elsewhere", f"owner@{small.slug}.test")

    done = deskbell("import", str(out), "--quiet", database_url=there.database_url, data_dir=there.data_dir)

    assert done.returncode == 1
    assert f"users.email owner@{small.slug}.test already belongs to another tenant" in done.stderr
    with system_session(url=there.database_url) as session:
        assert session.get(Tenant, small.tenant_id) is None


# -- the admin's download --------------------------------------------------------------------------------------------


def test_an_admin_downloads_a_months_conversations_as_csv_and_json_and_an_agent_may_not(stack: Stack) -> None:
    made = stack.bootstrap("ana")
    with system_session() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == made["tenant"]))
    january, february, march = (new_conversation(tenant_id) for _ in range(3))
    with tenant_session(tenant_id) as session:
        visitor_id = session.scalar(select(Conversation.visitor_id).where(Conversation.id == february))
        do_store_messages(session, [Inbound(visitor_id, "formula", '=HYPERLINK("http://x.test") 你好')])
        # Conversations from earlier months: only the clock could make them, so their dates are set here.
        for conversation_id, day in (
            (january, "2025-01-31 23:59:59+00"),
            (february, "2025-02-01 00:00:00+00"),
            (march, "2025-03-01 00:00:00+00"),
        ):
            session.execute(
                text("UPDATE conversations SET created_at = :day WHERE id = :id"), {"day": day, "id": conversation_id}
            )
        session.commit()
    owner, agent = Agent(stack.base_url), Agent(stack.base_url)
    owner.login(str(made["owner_email"]), str(made["owner_password"]))
    [ana] = made["agents"]  # type: ignore[misc]
    agent.login(ana["email"], ana["password"])
    february_only = {"from": "2025-02-01", "to": "2025-02-28"}

    as_csv = owner.client.get("/admin/export/conversations.csv", params=february_only)
    as_json = owner.client.get("/admin/export/conversations.json", params=february_only)

    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert (
        f'filename="conversations-{made["tenant"]}-2025-02-01-2025-02-28.csv"' in as_csv.headers["content-disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert [(r["conversation_id"], r["message_seq"], r["sender"], r["body"]) for r in rows] == [
        (str(february), "1", "visitor", "Hello?"),
        (str(february), "2", "visitor", '\'=HYPERLINK("http://x.test") 你好'),  # never a formula in a spreadsheet
    ]
    assert as_json.status_code == 200
    [conversation] = as_json.json()
    assert conversation["id"] == str(february) and conversation["status"] == "open"
    assert [m["body"] for m in conversation["messages"]] == ["Hello?", '=HYPERLINK("http://x.test") 你好']
    assert (
        len(
            owner.client.get(
                "/admin/export/conversations.json", params={"from": "2025-01-01", "to": "2025-03-01"}
            ).json()
        )
        == 3
    )

    for query, message in (
        ({"from": "2025-02-01"}, "Give the days to export as from=YYYY-MM-DD and to=YYYY-MM-DD"),
        ({"from": "2025-02-30", "to": "2025-03-01"}, "from is not a day in the form YYYY-MM-DD"),
        ({"from": "2025-03-01", "to": "2025-02-01"}, "from (2025-03-01) is after to (2025-02-01)"),
    ):
        refused = owner.client.get("/admin/export/conversations.csv", params=query)
        assert refused.status_code == 400 and message in refused.json()["message"]
    assert agent.client.get("/admin/export/conversations.csv", params=february_only).status_code == 403
    assert agent.client.get("/admin/export/conversations.json", params=february_only).status_code == 403
    with system_session() as session:
        logged = session.scalars(select(AuditLog.action).where(AuditLog.tenant_id == tenant_id)).all()
    assert logged.count("export.conversations") == 3
