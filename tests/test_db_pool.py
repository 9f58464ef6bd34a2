"""The connection pool (desk/db.py): a connection that sat idle is checked before use, so a PostgreSQL restart or
a connection cut while idle costs no request an error; a connection reused at once is not pinged."""

from __future__ import annotations

import time

import psycopg
import pytest
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


def test_only_a_connection_idle_for_a_while_is_pinged(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.engine()
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(connection: object) -> bool:
        pings.append(connection)
        return ping(connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    backend_pid(engine)
    backend_pid(engine)  # taken back at once, as under load: no round trip before it
    assert pings == []
    time.sleep(db.PING_IDLE_SECONDS + 0.2)
    backend_pid(engine)
    assert len(pings) == 1
