"""`deskbell export`: one tenant's rows and files in one .tar.gz (docs/operations.md, "Export, import, backup").

The archive:

    manifest.json                format, versions, the migration, the tenant, counts and SHA-256 of every member
    tables/<table>.jsonl         one row per line (desk/archive/tables.py), sorted by primary key
    files/attachments/<id>       each attachment's bytes

Everything is read in one REPEATABLE READ transaction, so the tables agree with each other; files are written
before their rows are committed, so every row read has its file.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, pool, select

from desk import __version__, attachments, settings
from desk.archive import FORMAT_VERSION, ArchiveError, Progress, Silent, as_system, database_revision, sha256_file
from desk.archive import write_manifest as _write_manifest
from desk.archive.tables import Scope, count_query, dumps, rows_query, tenant_tables
from desk.models import Tenant

FETCH_ROWS = 2000


def export_tenant(
    url: str,
    slug: str,
    out: Path,
    data_dir: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write tenant `slug`'s archive to `out` (replaced only once complete); return its manifest."""
    progress = progress or Silent()
    engine = create_engine(settings.sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin(), tempfile.TemporaryDirectory(prefix="deskbell-export-") as tmp:
                return _export(conn, slug, out, data_dir, Path(tmp), since, until, progress)
    finally:
        engine.dispose()


def _export(
    conn: Connection,
    slug: str,
    out: Path,
    data_dir: Path,
    tmp: Path,
    since: datetime | None,
    until: datetime | None,
    progress: Progress,
) -> dict[str, Any]:
    as_system(conn)
    conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # times come back in UTC, and are written so
    tenant = conn.execute(select(Tenant.id, Tenant.name).where(Tenant.slug == slug)).first()
    if tenant is None:
        raise ArchiveError(f"no tenant with the slug {slug!r} in this installation")
    scope = Scope(tenant.id, since, until)
    tables = tenant_tables()
    counts = {t.name: conn.scalar(count_query(t, scope)) or 0 for t in tables}
    progress.start(f"Exporting {slug}", sum(counts.values()))
    entries: list[dict[str, Any]] = []
    files: list[tuple[str, Path, str, int]] = []
    (tmp / "tables").mkdir()
    for table in tables:
        name = f"tables/{table.name}.jsonl"
        digest, rows = hashlib.sha256(), 0
        with (tmp / name).open("wb") as f:
            result = conn.execution_options(yield_per=FETCH_ROWS).execute(rows_query(table, scope))
            for row in result.mappings():
                line = dumps(dict(row)) + b"\n"
                f.write(line)
                digest.update(line)
                rows += 1
                if table.name == "attachments":
                    files.append(_attachment_file(data_dir, row))
                if rows % FETCH_ROWS == 0:
                    progress.advance(FETCH_ROWS)
        progress.advance(rows % FETCH_ROWS)
        entries.append({"name": table.name, "file": name, "rows": rows, "sha256": digest.hexdigest()})
    progress.finish()
    manifest = {
        "format": "deskbell-tenant-archive",
        "format_version": FORMAT_VERSION,
        "deskbell_version": __version__,
        "migration_revision": database_revision(conn),
        "tenant": {"id": str(tenant.id), "slug": slug, "name": tenant.name},
        "created_at": datetime.now(UTC).isoformat(),
        "range": {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None},
        "tables": entries,
        "files": [{"name": arcname, "sha256": sha, "size": size} for arcname, _, sha, size in files],
    }
    _write_manifest(tmp / "manifest.json", manifest)
    _write_archive(out, tmp, entries, files)
    return manifest


def _attachment_file(data_dir: Path, row: Any) -> tuple[str, Path, str, int]:
    """(name in the archive, path on disk, SHA-256, size) of an attachment row's file, checked against the row."""
    path = attachments.path_for(data_dir, uuid.UUID(str(row["tenant_id"])), uuid.UUID(str(row["id"])))
    if not path.is_file():
        raise ArchiveError(f"attachment {row['id']} has no file at {path} (is DESKBELL_DATA the right folder?)")
    sha = sha256_file(path)
    if sha != row["sha256"]:
        raise ArchiveError(f"attachment {row['id']}: the file at {path} is not the one uploaded (SHA-256 differs)")
    return f"files/attachments/{row['id']}", path, sha, path.stat().st_size


def _write_archive(
    out: Path, tmp: Path, entries: list[dict[str, Any]], files: list[tuple[str, Path, str, int]]
) -> None:
    """manifest.json first (so a reader meets it first), then the tables, then the files; renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    try:
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            tar.add(tmp / "manifest.json", "manifest.json")
            for entry in entries:
                tar.add(tmp / entry["file"], entry["file"])
            for arcname, path, _, _ in files:
                tar.add(path, arcname)
        os.replace(partial, out)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
