"""The store worker's action alone (issue 10): `do_store_messages` and its commit, per batch size.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.store [--batches N]

1. Creates the database `deskbell_bench_store` on DATABASE_URL's server and migrates it; makes a tenant with the
   real bootstrap action and 300 visitors (tests/factories.py).
2. For batches of 1, 5, 20 and 100 messages (each from another visitor, as a busy site's are), stores N batches,
   each in its own tenant_session and transaction, as workers/store.py does, after a warm-up and an ANALYZE.
3. Prints the median and p90 time of a batch and this process's CPU per batch; the raw baseline is the same
   number of rows inserted and committed with plain psycopg in one statement. Drops the database.

A benchmark, not a test: nothing here asserts a time. docs/benchmarks.md records figures.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
import uuid

import psycopg

DB_NAME = "deskbell_bench_store"
BATCHES = (1, 5, 20, 100)
VISITORS = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="batches timed per size")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))

    from desk import migrate
    from desk.embedded import ensure_database

    url = ensure_database(server, DB_NAME)
    os.environ["DATABASE_URL"] = url  # tests.factories works on DATABASE_URL's database
    try:
        migrate.upgrade(url)
        from desk.actions.messages import Inbound, do_store_messages
        from desk.db import engine, tenant_session
        from tests.factories import new_tenant, new_visitor

        tenant_id = new_tenant()
        visitors = [new_visitor(tenant_id) for _ in range(VISITORS)]
        sent = 0

        def batch_of(size: int) -> list[Inbound]:
            nonlocal sent
            sent += size
            return [Inbound(visitors[i % VISITORS], f"m-{i}", f"message {i}") for i in range(sent - size, sent)]

        def store(batch: list[Inbound]) -> None:
            with tenant_session(tenant_id) as session:
                do_store_messages(session, batch)
                session.commit()

        for _ in range(100):  # warm-up: connections, statements, a conversation for every visitor
            store(batch_of(5))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            conn.execute("CREATE TABLE raw_rows (id bigserial PRIMARY KEY, visitor_id uuid, body text)")
        print(f"do_store_messages + commit, {args.batches} batches a size, a visitor per message")
        for size in BATCHES:
            times, cpu = [], time.process_time()
            for _ in range(args.batches):
                batch = batch_of(size)
                began = time.perf_counter()
                store(batch)
                times.append(time.perf_counter() - began)
            cpu_ms = (time.process_time() - cpu) / args.batches * 1000
            raw = _raw_insert(url, size, args.batches)
            print(
                f"  batch of {size:3d}: median {statistics.median(times) * 1000:6.2f} ms, "
                f"p90 {statistics.quantiles(times, n=10)[-1] * 1000:6.2f} ms, CPU {cpu_ms:5.2f} ms; "
                f"raw insert + commit median {raw:5.2f} ms"
            )
        engine(None).dispose()
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def _raw_insert(url: str, size: int, batches: int) -> float:
    """The median ms to insert `size` rows in one statement and commit, with plain psycopg."""
    times = []
    with psycopg.connect(url) as conn:
        for _ in range(batches):
            ids, bodies = [uuid.uuid4() for _ in range(size)], ["hello"] * size
            began = time.perf_counter()
            conn.execute(
                "INSERT INTO raw_rows (visitor_id, body) SELECT * FROM unnest(%s::uuid[], %s::text[])", (ids, bodies)
            )
            conn.commit()
            times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


if __name__ == "__main__":
    main()
