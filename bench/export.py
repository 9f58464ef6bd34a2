"""A tenant's export and import with many conversations (issue 6; docs/operations.md, "Export, import, backup").

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.export [--conversations N]

1. Creates the databases `deskbell_bench_export_a` and `_b` on DATABASE_URL's server and migrates them.
2. Makes a tenant in `_a` with the real bootstrap action, then N conversations (default 10,000) with two messages
   each, events and labels, with the same SQL builder the tests use (tests/factories.py, bulk_conversations).
3. Times `export_tenant`, `import_tenant` into `_b`, the same import again (adds nothing), and the export from
   `_b`; checks the two exports' tables are the same bytes. Prints rows, sizes and seconds.
4. Drops both databases.

A benchmark, not a test: nothing here asserts a time. docs/benchmarks.md records figures.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

NAMES = ("deskbell_bench_export_a", "deskbell_bench_export_b")


def _tables(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.startswith("tables/")}  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))

    from desk import migrate
    from desk.embedded import ensure_database

    a, b = (ensure_database(server, name) for name in NAMES)
    os.environ["DATABASE_URL"] = a  # tests.factories works on DATABASE_URL's database
    try:
        for url in (a, b):
            migrate.upgrade(url)
        from desk.archive.export import export_tenant
        from desk.archive.importer import import_tenant
        from tests.factories import bulk_conversations, new_agent, new_tenant

        tenant_id = new_tenant()
        agent_id = new_agent(tenant_id)
        began = time.monotonic()
        bulk_conversations(
            tenant_id,
            args.conversations,
            start=datetime(2025, 1, 1, tzinfo=UTC),
            every=timedelta(minutes=5),
            agent_id=agent_id,
        )
        print(f"made {args.conversations} conversations in {time.monotonic() - began:.1f}s")
        with psycopg.connect(a) as conn:
            slug = conn.execute("SELECT slug FROM tenants WHERE id = %s", (tenant_id,)).fetchone()[0]  # type: ignore[index]
        with tempfile.TemporaryDirectory() as tmp:
            first, again, data = Path(tmp, "a.tar.gz"), Path(tmp, "b.tar.gz"), Path(tmp, "data")
            began = time.monotonic()
            manifest = export_tenant(a, slug, first, data)
            rows = sum(t["rows"] for t in manifest["tables"])
            print(f"export: {rows} rows, {first.stat().st_size / 1e6:.1f} MB, {time.monotonic() - began:.1f}s")
            for label in ("import", "import again"):
                began = time.monotonic()
                result = import_tenant(b, first, data)
                added = sum(t.inserted for t in result.tables)
                print(f"{label}: {added} rows added, {time.monotonic() - began:.1f}s")
            began = time.monotonic()
            export_tenant(b, slug, again, data)
            print(f"export of the imported tenant: {time.monotonic() - began:.1f}s")
            print("same tables:", _tables(first) == _tables(again))
    finally:
        from desk.db import engine

        engine(a).dispose()
        with psycopg.connect(server, autocommit=True) as conn:
            for name in NAMES:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
