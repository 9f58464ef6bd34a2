"""`deskbell backup` / `deskbell restore`: the whole installation (docs/operations.md, "Export, import, backup").

A backup is a folder:

    manifest.json     versions, the migration, PostgreSQL's and pg_dump's versions, rows per table, file checksums
    database.dump     pg_dump --format=custom of the whole database
    data/             the data folder without pg/ (the embedded cluster: it is in database.dump) and nats/
                      (JetStream's work queues: nothing in them is needed once the database is back)

The database is dumped first, the files copied after it: a file is written before its row commits, so every
attachment row in the dump has its file in data/ (a file without a row is never served).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, create_engine, func, pool, select, text

from desk import __version__, settings
from desk.archive import (
    FORMAT_VERSION,
    SYSTEM_SETTING,
    ArchiveError,
    as_system,
    database_revision,
    sha256_file,
    write_manifest,
)
from desk.models import Base

DUMP = "database.dump"
# Parts of the data folder a backup leaves out, and why (docs/operations.md says the same).
NOT_BACKED_UP = {
    "pg": "the embedded PostgreSQL's files: the database is in database.dump",
    "nats": "JetStream's streams: work queues, drained once the processes stop",
}


def backup(url: str, data_dir: Path, out: Path, *, log: Any = None) -> dict[str, Any]:
    """Dump the database and copy the data folder into the new or empty folder `out`; return the manifest."""
    say = log or (lambda _message: None)
    if out.exists() and any(out.iterdir()):
        raise ArchiveError(f"{out} is not empty: give a new folder for the backup")
    if out.resolve().is_relative_to(data_dir.resolve()):
        raise ArchiveError(f"{out} is inside the data folder {data_dir}: put the backup somewhere else")
    out.mkdir(parents=True, exist_ok=True)
    with _connect(url) as plain:
        conn = plain.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # pg_dump reads the snapshot this transaction exported, so the row counts are the dump's exactly.
            as_system(conn)
            snapshot = conn.scalar(text("SELECT pg_export_snapshot()"))
            server = int(conn.scalar(text("SHOW server_version_num")) or 0) // 10000
            revision = database_revision(conn)
            counts = _row_counts(conn)
            pg_dump = pg_tool("pg_dump", server)
            args = [str(pg_dump), "--format=custom", f"--snapshot={snapshot}", "--file", str(out / DUMP)]
            if not _bypasses_rls(conn):
                # A login held to row-level security dumps what its policies show: with the system setting
                # (PGOPTIONS, see _run), every row.
                args.append("--enable-row-security")
            say(f"backup: dumping the database with {pg_dump} (version {tool_version(pg_dump)})")
            _run([*args, "--dbname", url])
    say(f"backup: copying the data folder {data_dir}")
    files = _copy_data(data_dir, out / "data") if data_dir.is_dir() else []
    manifest = {
        "format": "deskbell-backup",
        "format_version": FORMAT_VERSION,
        "deskbell_version": __version__,
        "migration_revision": revision,
        "created_at": datetime.now(UTC).isoformat(),
        "postgresql_major": server,
        "pg_dump_major": tool_version(pg_dump),
        "database": {"file": DUMP, "sha256": sha256_file(out / DUMP)},
        "tables": counts,
        "files": files,
    }
    write_manifest(out / "manifest.json", manifest)
    return manifest


def restore(url: str, data_dir: Path, source: Path, *, log: Any = None) -> dict[str, int]:
    """Restore the backup folder `source` into the empty database at `url` and the data folder; return row counts.

    Refuses a changed backup (checksums), a database that has tables, and a pg_restore older than the dump's.
    """
    say = log or (lambda _message: None)
    try:
        manifest = json.loads((source / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{source} is not a Deskbell backup: {exc}") from None
    if manifest.get("format") != "deskbell-backup":
        raise ArchiveError(f"{source} is not a Deskbell backup")
    _verify(source, manifest)
    with _connect(url) as conn:
        tables = conn.scalar(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        server = int(conn.scalar(text("SHOW server_version_num")) or 0) // 10000
    if tables:
        raise ArchiveError(
            "restore needs an empty database: this one has tables (create a new database, point DATABASE_URL at it)"
        )
    pg_restore = pg_tool("pg_restore", max(server, int(manifest["pg_dump_major"])))
    toc = _restore_list(url, pg_restore, source / DUMP, say)
    say(f"restore: restoring the database with {pg_restore} (version {tool_version(pg_restore)})")
    try:
        # No owners from the old server: the restored objects belong to whoever DATABASE_URL logs in as.
        _run(
            [str(pg_restore), "--no-owner", "--exit-on-error", "--single-transaction", "--use-list", str(toc)]
            + ["--dbname", url, str(source / DUMP)]
        )
    finally:
        toc.unlink()
    say(f"restore: copying the data folder into {data_dir}")
    for entry in manifest["files"]:
        target = data_dir / entry["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "data" / entry["name"], target)
    with _connect(url) as conn:
        counts = _row_counts(conn)
    if wrong := {t: (n, counts.get(t)) for t, n in manifest["tables"].items() if counts.get(t) != n}:
        details = ", ".join(f"{t}: {got} rows, the backup had {n}" for t, (n, got) in sorted(wrong.items()))
        raise ArchiveError(f"the restored database does not have the backup's rows ({details})")
    return counts


# -- PostgreSQL's tools ----------------------------------------------------------------------------------------------


def _candidates(name: str) -> list[Path]:
    """pg_dump/pg_restore on PATH (Debian's postgresql-client), in Debian's versioned folders, and the ones the
    embedded server's wheel (pgserver) ships."""
    found = [Path(p) for p in [shutil.which(name)] if p]
    found += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    spec = importlib.util.find_spec("pgserver")  # found, not imported: importing it starts nothing, but warns
    if spec is not None and spec.origin:
        found.append(Path(spec.origin).parent / "pginstall" / "bin" / name)
    return [p for p in dict.fromkeys(p.resolve() for p in found) if p.is_file() and os.access(p, os.X_OK)]


def tool_version(path: Path) -> int:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


def pg_tool(name: str, at_least: int) -> Path:
    """The oldest `name` that is at least version `at_least` (a dump is only readable by the same or newer)."""
    versions = {path: tool_version(path) for path in _candidates(name)}
    usable = sorted((v, str(p)) for p, v in versions.items() if v >= at_least)
    if not usable:
        seen = ", ".join(f"{p} ({v})" for p, v in versions.items()) or "none"
        raise ArchiveError(
            f"{name} {at_least} or newer is needed (found: {seen}): install Debian's postgresql-client "
            f"(apt-get install postgresql-client-{at_least}) or put one on PATH"
        )
    return Path(usable[0][1])


def _run(args: list[str]) -> None:
    # The system setting for every session the tool opens (see desk.archive.SYSTEM_SETTING).
    env = {**os.environ, "PGOPTIONS": f"{os.environ.get('PGOPTIONS', '')} -c {SYSTEM_SETTING}=on".strip()}
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise ArchiveError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _bypasses_rls(conn: Connection) -> bool:
    return bool(conn.scalar(text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")))


def _restore_list(url: str, pg_restore: Path, dump: Path, say: Any) -> Path:
    """What pg_restore restores: everything, with the grants to the application's role (row-level security,
    desk/db.py) when that role exists here or can be made; without those the application would run unprotected
    as its login, or not at all. Default privileges belong to a role: only this login's (or any, as superuser)."""
    from desk.db import APP_ROLE

    role = text("SELECT to_regrole(:r) IS NOT NULL").bindparams(r=APP_ROLE)
    with _connect(url) as conn:
        me, superuser = conn.execute(
            text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        ).one()
        if not conn.scalar(role):
            try:  # as migration 0008 does
                conn.exec_driver_sql(f"CREATE ROLE {APP_ROLE} NOLOGIN")
                if not superuser:
                    conn.exec_driver_sql(f'GRANT {APP_ROLE} TO "{me}"')
                conn.commit()
            except sqlalchemy.exc.DBAPIError:
                conn.rollback()
        has_role = bool(conn.scalar(role))
    if not has_role:
        say(
            f"restore: the role {APP_ROLE} is missing and this login may not make it: grants are left out, and "
            "row-level security does not bind the application until a DBA makes it (docs/operations.md)"
        )
    kept = []
    for line in subprocess.run(
        [str(pg_restore), "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout.splitlines():
        if " ACL " in line and not has_role:
            continue
        if " DEFAULT ACL " in line and not superuser and line.split()[-1] != me:
            say(f"restore: left out (another role's default privileges): {line}")
            continue
        kept.append(line)
    fd, name = tempfile.mkstemp(prefix="deskbell-restore-", suffix=".list")
    os.close(fd)
    listing = Path(name)
    listing.write_text("\n".join(kept) + "\n")
    return listing


# -- the database and the data folder --------------------------------------------------------------------------------


@contextmanager
def _connect(url: str) -> Iterator[Connection]:
    """A one-off connection, closed with its engine."""
    engine = create_engine(settings.sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _row_counts(conn: Connection) -> dict[str, int]:
    as_system(conn)
    return {t.name: conn.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def _copy_data(data_dir: Path, into: Path) -> list[dict[str, Any]]:
    """Copy the data folder's files (not NOT_BACKED_UP, not half-written uploads); list them with checksums."""
    files = []
    for path in sorted(data_dir.rglob("*")):
        relative = path.relative_to(data_dir)
        if relative.parts[0] in NOT_BACKED_UP or path.name.startswith((".upload-", ".import-")) or not path.is_file():
            continue
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        files.append({"name": relative.as_posix(), "sha256": sha256_file(target), "size": target.stat().st_size})
    return files


def _verify(source: Path, manifest: dict[str, Any]) -> None:
    wanted = [(DUMP, manifest["database"]["sha256"])]
    for entry in manifest["files"]:
        if Path(entry["name"]).is_absolute() or ".." in Path(entry["name"]).parts:
            raise ArchiveError(f"the backup's manifest names a file outside it: {entry['name']!r}")
        wanted.append((f"data/{entry['name']}", entry["sha256"]))
    for name, sha in wanted:
        path = source / name
        if not path.is_file():
            raise ArchiveError(f"the backup is missing {name}; nothing was restored")
        if sha256_file(path) != sha:
            raise ArchiveError(f"{name} does not match its SHA-256 in the backup's manifest; nothing was restored")
