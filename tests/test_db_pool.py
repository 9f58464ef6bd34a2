"""The connection pool (desk/db.py): a connection that sat idle is checked before use, so a PostgreSQL restart or
a connection cut while idle costs no request an error; a connection reused at once is not pinged; a burst as
wide as the pool opens its connections once and keeps them; every connection plans each statement for its own
values."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.engine import Engine

from desk import db


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_cut_while_idle_is_replaced_without_an_error(database_url: str) -> None:
    engine = db.engine()
    engine.dispose()
    first = backend_pid(engine)
    with psycopg.connect(database_url, autocommit=True) as admin:  # PostgreSQL ends it, as a restart would
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    time.sleep(db.PING_IDLE_SECONDS + 0.2)
    assert backend_pid(engine) != first, "a new connection, and no error"


def test_a_connection_reused_at_once_is_not_checked_first(database_url: str) -> None:
    """Under load a connection goes back into use within a second of its last, and then costs no ping: so one cut
    in between fails its statement (the pool's trade-off), and the pool replaces it for the next."""
    engine = db.engine()
    engine.dispose()
    first = backend_pid(engine)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone():
            time.sleep(0.01)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        backend_pid(engine)  # within PING_IDLE_SECONDS of its last use: not pinged, so the cut shows
    assert backend_pid(engine) != first


def test_a_burst_as_wide_as_the_pool_opens_each_connection_once_and_keeps_it(database_url: str) -> None:
    engine = db.engine()
    engine.dispose()
    together = Barrier(db.POOL_SIZE)

    def in_a_burst(_: int) -> int:
        with engine.connect() as connection:
            together.wait(10)  # every connection checked out at once, as under a storm of new visitors
            return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())

    try:
        with ThreadPoolExecutor(db.POOL_SIZE) as threads:
            first = set(threads.map(in_a_burst, range(db.POOL_SIZE)))
            second = set(threads.map(in_a_burst, range(db.POOL_SIZE)))
    finally:
        engine.dispose()  # this test process needs few of them afterwards
    assert len(first) == db.POOL_SIZE
    assert second == first, "the same PostgreSQL backends: none closed on return and opened again"


def test_every_connection_plans_each_statement_for_its_own_values(database_url: str) -> None:
    """psycopg prepares a statement after five runs; a generic plan made for one tenant's size (or for a new
    tenant's stale statistics) would then serve every tenant: the store's message lookup scanned a whole tenant."""
    engine = db.engine()
    engine.dispose()
    with engine.connect() as first, engine.connect() as second:
        settings = [c.execute(text("SHOW plan_cache_mode")).scalar_one() for c in (first, second)]
    assert settings == ["force_custom_plan", "force_custom_plan"]
