"""`deskbell import`: a tenant's archive into this installation (docs/operations.md, "Export, import, backup").

In order, and all of it or nothing:

1. unpack the archive and check every member against the manifest's SHA-256 (a changed archive is refused);
2. refuse an archive from a migration newer than the database's;
3. in one transaction: COPY each table into a temporary table; refuse rows of any other tenant, a slug or an
   email (or any other installation-wide unique value) that another tenant holds; give new ids to rows whose
   sequence-made id another tenant already uses (an archive from another installation); insert parents before
   children with ON CONFLICT DO NOTHING, so a second import adds nothing; check that every archived row is now
   in the database with the archive's content; copy the attachments' files; commit.

Ids are kept (apart from those clashing sequence ids), so exporting the imported tenant gives the same tables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy.exc
from sqlalchemy import Connection, Table, UniqueConstraint, create_engine, pool, text

from desk import attachments, settings
from desk.archive import (
    FORMAT_VERSION,
    ArchiveError,
    Progress,
    Silent,
    as_system,
    database_revision,
    known_revisions,
)
from desk.archive import sha256_file as _sha256
from desk.archive.tables import copy_converters, primary_key, serial_key, tenant_of, tenant_tables

_FILE = re.compile(r"files/attachments/([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})")


@dataclass
class TableResult:
    name: str
    archived: int
    inserted: int = 0
    present: int = 0  # already in the installation with the archive's content (a second import)
    renumbered: int = 0  # new ids: another tenant here had these sequence ids
    verified: int = 0  # archived rows now in the installation with the archive's content


@dataclass
class Imported:
    tenant_id: uuid.UUID
    slug: str
    tables: list[TableResult] = field(default_factory=list)
    files: int = 0
    files_copied: int = 0


class ImportMismatch(ArchiveError):
    """The rows in the database after the import are not the archive's; nothing was committed."""

    def __init__(self, message: str, result: Imported) -> None:
        super().__init__(message)
        self.result = result


def import_tenant(
    url: str, archive: Path, data_dir: Path, *, slug: str | None = None, progress: Progress | None = None
) -> Imported:
    progress = progress or Silent()
    with tempfile.TemporaryDirectory(prefix="deskbell-import-") as tmp:
        manifest = unpack(archive, Path(tmp))
        engine = create_engine(settings.sqlalchemy_url(url), poolclass=pool.NullPool)
        try:
            with engine.connect() as conn, conn.begin():
                as_system(conn)
                _check_revision(conn, manifest)
                return _import(conn, manifest, Path(tmp), data_dir, slug, progress)
        except sqlalchemy.exc.IntegrityError as exc:
            raise ArchiveError(
                f"the archive's rows conflict with this installation's: {_pg_message(exc.orig)}"
            ) from None
        except (sqlalchemy.exc.DBAPIError, psycopg.DataError) as exc:  # values PostgreSQL refuses: a forged archive
            orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
            raise ArchiveError(
                f"the archive's rows cannot be stored: {_pg_message(orig)}; nothing was imported"
            ) from None
        finally:
            engine.dispose()


# -- the archive -----------------------------------------------------------------------------------------------------


def unpack(archive: Path, into: Path) -> dict[str, Any]:
    """Extract `archive` and check it whole against its manifest; return the manifest."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name for m in tar.getmembers() if m.isfile()}
            if "manifest.json" not in members:
                raise ArchiveError(f"{archive} is not a Deskbell tenant archive (it has no manifest.json)")
            tar.extractall(into, filter="data")
        manifest = json.loads((into / "manifest.json").read_text())
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise ArchiveError(f"cannot read {archive}: {exc}") from None
    if manifest.get("format") != "deskbell-tenant-archive":
        raise ArchiveError(f"{archive} is not a Deskbell tenant archive")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ArchiveError(
            f"{archive} has archive format {manifest['format_version']}; this Deskbell reads up to "
            f"{FORMAT_VERSION}: upgrade Deskbell first"
        )
    listed: dict[str, str] = {}
    for entry in manifest["tables"]:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", entry["name"]) or entry["file"] != f"tables/{entry['name']}.jsonl":
            raise ArchiveError(f"{archive}: the manifest names a table file it may not: {entry['file']!r}")
        listed[entry["file"]] = entry["sha256"]
    for entry in manifest["files"]:
        if not _FILE.fullmatch(entry["name"]):
            raise ArchiveError(f"{archive}: the manifest names a file it may not: {entry['name']!r}")
        listed[entry["name"]] = entry["sha256"]
    if unlisted := sorted(members - set(listed) - {"manifest.json"}):
        raise ArchiveError(
            f"{archive} holds files its manifest does not list ({', '.join(unlisted[:3])}): "
            "it was changed after the export; nothing was imported"
        )
    for name, sha in listed.items():
        if name not in members:
            raise ArchiveError(f"{archive} is missing {name}, which its manifest lists; nothing was imported")
        if _sha256(into / name) != sha:
            raise ArchiveError(
                f"{archive}: {name} does not match its SHA-256 in the manifest: the archive was "
                "changed or damaged after the export; nothing was imported"
            )
    return manifest


def _check_revision(conn: Connection, manifest: dict[str, Any]) -> None:
    here = database_revision(conn)
    if here is None:
        raise ArchiveError("this database has no Deskbell tables yet: run `deskbell release` first")
    theirs = manifest["migration_revision"]
    try:
        understood = known_revisions(here)
    except Exception as exc:  # the database is newer than this code
        raise ArchiveError(f"the database is at migration {here}, which this Deskbell does not know: {exc}") from None
    if theirs not in understood:
        raise ArchiveError(
            f"the archive was made at migration {theirs}, newer than this installation's {here}: "
            "upgrade Deskbell here (and run `deskbell release`) before importing it"
        )


# -- the import ------------------------------------------------------------------------------------------------------


def _import(
    conn: Connection, manifest: dict[str, Any], unpacked: Path, data_dir: Path, slug: str | None, progress: Progress
) -> Imported:
    tenant_id = uuid.UUID(manifest["tenant"]["id"])
    entries = {e["name"]: e for e in manifest["tables"]}
    tables = [t for t in tenant_tables() if t.name in entries]
    if unknown := sorted(set(entries) - {t.name for t in tables}):
        raise ArchiveError(
            f"the archive has tables this Deskbell does not know ({', '.join(unknown)}): it was made "
            "by a newer version; upgrade Deskbell here first"
        )
    if entries.get("tenants", {}).get("rows") != 1:
        raise ArchiveError("the archive does not hold exactly one tenant row; nothing was imported")
    result = Imported(tenant_id, slug or manifest["tenant"]["slug"])
    progress.start(f"Importing {result.slug}", sum(e["rows"] for e in entries.values()) + len(manifest["files"]))
    staged: dict[str, list[str]] = {}
    for table in tables:
        staged[table.name] = _stage(conn, table, unpacked / entries[table.name]["file"], progress)
    if slug:
        conn.execute(text('UPDATE "import_tenants" SET slug = :slug'), {"slug": slug})
    _refuse_clashes(conn, tables, tenant_id, result.slug)
    for table in tables:
        columns = staged[table.name]
        outcome = TableResult(table.name, archived=entries[table.name]["rows"])
        staged_rows = conn.scalar(text(f'SELECT count(*) FROM "import_{table.name}"'))
        if staged_rows != outcome.archived:
            raise ArchiveError(
                f"{table.name}: the archive's file has {staged_rows} rows, its manifest says "
                f"{outcome.archived}; nothing was imported"
            )
        dropped = 0
        if serial_key(table) is not None:
            dropped, outcome.renumbered = _renumber(conn, table, columns)
        outcome.inserted = _insert(conn, table, columns)
        outcome.present = outcome.archived - outcome.inserted
        outcome.verified = _verified(conn, table, columns) + dropped
        result.tables.append(outcome)
    if bad := [t for t in result.tables if t.verified != t.archived]:
        details = "; ".join(f"{t.name}: {t.archived - t.verified} of {t.archived} rows differ" for t in bad)
        raise ImportMismatch(
            f"after the import the database does not hold the archive's rows ({details}): this installation already "
            "had this tenant, and changed since the export; nothing was imported",
            result,
        )
    for table in tables:  # the planner would take a table that was empty for empty until autovacuum comes by
        if next(t for t in result.tables if t.name == table.name).inserted:
            conn.exec_driver_sql(f'ANALYZE "{table.name}"')
    result.files, result.files_copied = _copy_files(manifest, unpacked, data_dir, tenant_id, progress)
    progress.finish()
    return result


def _stage(conn: Connection, table: Table, path: Path, progress: Progress) -> list[str]:
    """COPY an archive file into a temporary table shaped like `table`; return the columns the archive has."""
    stage = f"import_{table.name}"
    conn.exec_driver_sql(f'CREATE TEMP TABLE "{stage}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP')
    with path.open("rb") as f:
        first = f.readline()
        if not first:
            return [c.name for c in table.c]
        keys = set(orjson.loads(first))
        if unknown := sorted(keys - set(table.c.keys())):
            raise ArchiveError(
                f"{table.name} in the archive has columns this Deskbell does not know "
                f"({', '.join(unknown)}): upgrade Deskbell here first"
            )
        columns = [c for c in table.c if c.name in keys]
        names = ", ".join(f'"{c.name}"' for c in columns)
        convert = list(zip([c.name for c in columns], copy_converters(columns), strict=True))
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        f.seek(0)
        with raw.cursor() as cur, cur.copy(f'COPY "{stage}" ({names}) FROM STDIN') as copy:
            for number, line in enumerate(f, 1):
                row = orjson.loads(line)
                if row.keys() != keys:
                    raise ArchiveError(f"{table.name} line {number} has other columns than the first line")
                copy.write_row([row[n] if f is None else f(row[n]) for n, f in convert])
                progress.advance()
    conn.exec_driver_sql(f'ANALYZE "{stage}"')  # temporary tables get no autovacuum: tell the planner their size
    return [c.name for c in columns]


def _refuse_clashes(conn: Connection, tables: list[Table], tenant_id: uuid.UUID, slug: str) -> None:
    """Rows of another tenant, and installation-wide unique values (slug, emails, site keys) held by another."""
    for table in tables:
        stage, owner = f'"import_{table.name}"', tenant_of(table).name
        strays = conn.scalar(text(f"SELECT count(*) FROM {stage} WHERE {owner} IS DISTINCT FROM :t"), {"t": tenant_id})
        if strays:
            raise ArchiveError(
                f"{table.name} in the archive has {strays} rows of another tenant than "
                f"{tenant_id}: the archive was changed; nothing was imported"
            )
        if serial_key(table) is None:
            on = " AND ".join(f'x."{c.name}" = i."{c.name}"' for c in primary_key(table))
            taken = conn.scalar(
                text(
                    f'SELECT count(*) FROM {stage} i JOIN "{table.name}" x ON {on} WHERE x.{owner} IS DISTINCT FROM :t'
                ),
                {"t": tenant_id},
            )
            if taken:
                raise ArchiveError(
                    f"{table.name}: {taken} of the archive's ids belong to another tenant of this "
                    "installation; nothing was imported"
                )
        for column in _unique_columns(table):
            clash = (
                conn.execute(
                    text(
                        f'SELECT i."{column}" FROM {stage} i JOIN "{table.name}" x ON x."{column}" = i."{column}" '
                        f"WHERE x.{owner} IS DISTINCT FROM :t LIMIT 3"
                    ),
                    {"t": tenant_id},
                )
                .scalars()
                .all()
            )
            if not clash:
                continue
            values = ", ".join(str(v) for v in clash)
            if (table.name, column) == ("tenants", "slug"):
                raise ArchiveError(
                    f"the slug {slug!r} belongs to another tenant of this installation: "
                    "import with --slug NEW to give this one another"
                )
            hint = " (emails are unique across tenants)" if column == "email" else ""
            raise ArchiveError(
                f"{table.name}.{column} {values} already belongs to another tenant of this "
                f"installation{hint}; nothing was imported"
            )


def _unique_columns(table: Table) -> list[str]:
    """The columns unique on their own across the installation, primary key aside."""
    found = {c.name for c in table.c if c.unique and not c.primary_key}
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1:
            found.update(c.name for c in constraint.columns)
    for index in table.indexes:
        if index.unique and len(index.columns) == 1 and not index.dialect_options["postgresql"].get("where"):
            found.update(c.name for c in index.columns)
    return sorted(found)


def _same(table: Table, columns: list[str], a: str, b: str) -> str:
    """Rows `a` and `b` hold the same values in `columns`: `=` where a column is NOT NULL, so the planner can
    hash-join on those (a nested loop over two 100,000-row tables would take minutes)."""
    return (
        " AND ".join(
            f'{a}."{c}" IS NOT DISTINCT FROM {b}."{c}"' if table.c[c].nullable else f'{a}."{c}" = {b}."{c}"'
            for c in columns
        )
        or "TRUE"
    )


def _renumber(conn: Connection, table: Table, columns: list[str]) -> tuple[int, int]:
    """For a table whose ids come from a sequence: move the sequence past the archive's ids (so rows made here
    later never collide), drop the rows a previous import already renumbered (same content), and give new ids to
    those whose ids another tenant's rows hold. Returns (dropped, renumbered)."""
    key = serial_key(table)
    assert key is not None
    stage, name = f'"import_{table.name}"', f'"{table.name}"'
    sequence = conn.scalar(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": key.name})
    if sequence is None:
        return 0, 0
    conn.execute(
        text(
            f"SELECT setval(:s, GREATEST((SELECT max({key.name}) FROM {name}), (SELECT max({key.name}) FROM {stage}), "
            f"(SELECT last_value FROM {sequence}), 1))"
        ),
        {"s": sequence},
    )
    owner = tenant_of(table).name
    clashes = (
        f"EXISTS (SELECT 1 FROM {name} o WHERE o.{key.name} = i.{key.name} AND o.{owner} IS DISTINCT FROM i.{owner})"
    )
    if not conn.scalar(text(f"SELECT count(*) FROM {stage} i WHERE {clashes}")):
        return 0, 0  # the usual case: an archive of this installation, or one whose ids are free here
    others = [c for c in columns if c != key.name]
    dropped = conn.execute(
        text(
            f"DELETE FROM {stage} i WHERE {clashes} AND EXISTS "
            f"(SELECT 1 FROM {name} x WHERE x.{owner} = i.{owner} AND {_same(table, others, 'x', 'i')})"
        )
    ).rowcount
    renumbered = conn.execute(
        text(f"UPDATE {stage} i SET {key.name} = nextval(:s) WHERE {clashes}"), {"s": sequence}
    ).rowcount
    return dropped, renumbered


def _insert(conn: Connection, table: Table, columns: list[str]) -> int:
    names = ", ".join(f'"{c}"' for c in columns)
    keys = ", ".join(f'"{c.name}"' for c in primary_key(table))
    return conn.execute(
        text(
            f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM "import_{table.name}" ORDER BY {keys} '
            f"ON CONFLICT ({keys}) DO NOTHING"
        )
    ).rowcount


def _verified(conn: Connection, table: Table, columns: list[str]) -> int:
    """Staged rows that are now in the table with exactly the staged content."""
    on = " AND ".join(f'x."{c.name}" = i."{c.name}"' for c in primary_key(table))
    same = _same(table, columns, "x", "i")
    return conn.scalar(text(f'SELECT count(*) FROM "import_{table.name}" i JOIN "{table.name}" x ON {on} WHERE {same}'))


def _copy_files(
    manifest: dict[str, Any], unpacked: Path, data_dir: Path, tenant_id: uuid.UUID, progress: Progress
) -> tuple[int, int]:
    """The attachments' files into the data folder; one already there with the same bytes is left alone."""
    copied = 0
    for entry in manifest["files"]:
        match = _FILE.fullmatch(entry["name"])
        assert match is not None  # unpack() checked every name
        target = attachments.path_for(data_dir, tenant_id, uuid.UUID(match.group(1)))
        if not (target.is_file() and _sha256(target) == entry["sha256"]):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".import-")
            os.close(fd)
            try:
                shutil.copyfile(unpacked / entry["name"], partial)
                os.replace(partial, target)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
            copied += 1
        progress.advance()
    return len(manifest["files"]), copied


def _pg_message(exc: BaseException | None) -> str:
    if not isinstance(exc, psycopg.Error):
        return str(exc)
    diag = exc.diag
    parts = [diag.table_name and f"table {diag.table_name}", diag.message_primary, diag.message_detail]
    return "; ".join(p for p in parts if p) or str(exc)
