"""Liveness (/healthz) and readiness (/readyz): what a supervisor and a load balancer ask a web process."""

from __future__ import annotations

import secrets

import httpx
import psycopg

from desk import settings
from desk.embedded import ensure_database, free_port
from tests.conftest import Stack


def test_readiness_is_503_and_says_which_dependency_is_down_while_the_process_stays_alive(stack: Stack) -> None:
    dead_nats = f"nats://127.0.0.1:{free_port()}"
    with stack.another_web(NATS_URL=dead_nats) as base_url:
        ready = httpx.get(base_url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["database"] == "ok"
        assert ready.json()["nats"].startswith("down")
        assert httpx.get(base_url + "/healthz", timeout=10).status_code == 200  # alive: no restart for this

    missing_db = stack.env["DATABASE_URL"].rsplit("/", 1)[0] + "/no_such_database"
    with stack.another_web(DATABASE_URL=missing_db) as base_url:
        ready = httpx.get(base_url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("down")
        assert httpx.get(base_url + "/healthz", timeout=10).status_code == 200


def test_readiness_is_503_while_the_database_is_behind_the_codes_migrations(stack: Stack) -> None:
    from alembic import command

    from desk.migrate import alembic_config

    server = stack.env["DATABASE_URL"].rsplit("/", 1)[0]
    behind = ensure_database(server, f"deskbell_behind_{secrets.token_hex(3)}")
    try:
        command.upgrade(alembic_config(settings.sqlalchemy_url(behind)), "0005")
        with stack.another_web(DATABASE_URL=behind) as base_url:
            ready = httpx.get(base_url + "/readyz", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["database"].startswith("behind: migrations at 0005, code needs ")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{behind.rsplit("/", 1)[1]}" WITH (FORCE)')
