"""Taking data out and putting it back: a tenant's archive (export, import) and the installation's backup.

docs/operations.md, "Export, import, backup", says what each command does and what an archive holds.

- tables.py    which tables a tenant owns, which of their rows an export takes, rows as canonical JSON
- export.py    `deskbell export`: one tenant to a .tar.gz with a manifest of counts and checksums
- importer.py  `deskbell import`: checked, idempotent, ids kept, verified before it commits
- backup.py    `deskbell backup` / `restore`: pg_dump of the whole database plus the data folder
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, text

FORMAT_VERSION = 1
CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """An archive or backup that cannot be made or used; the message says why, for the operator."""


class Progress(Protocol):
    """What the commands show while they work (a bar on stderr); the functions here only report."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


class Silent:
    """A Progress that shows nothing (`--quiet`, and callers that are not a terminal)."""

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


# Row-level security (migration 0008) holds even the tables' owner to its policies (FORCE): a command of the
# operator's reads and writes every tenant's rows as a system transaction, as the migrations do
# (desk/migrations/env.py; desk/db.py sets the same for system sessions).
SYSTEM_SETTING = "deskbell.system"


def as_system(conn: Connection) -> None:
    """Make the connection's current transaction a system one (see SYSTEM_SETTING)."""
    conn.exec_driver_sql(f"SELECT set_config('{SYSTEM_SETTING}', 'on', true)")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def database_revision(conn: Connection) -> str | None:
    """The migration the database is at (Alembic's alembic_version), or None before the first migration."""
    exists = conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    return conn.scalar(text("SELECT version_num FROM alembic_version")) if exists else None


def known_revisions(up_to: str) -> set[str]:
    """Every migration at or before `up_to`: the revisions whose data this installation understands."""
    from alembic.script import ScriptDirectory

    from desk.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.iterate_revisions(up_to, "base")}


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
