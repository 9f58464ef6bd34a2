"""Engine, sessions and tenant scoping: the one place where a query is limited to a tenant.

A session opened with `tenant_session(tenant_id)` adds `tenant_id = :tenant` to every ORM SELECT, UPDATE and DELETE
on a TenantScoped class, and refuses to flush a row of another tenant. Code that must cross tenants (logging in
by email, finding a site by its public key, `deskbell bootstrap`) opens `system_session()` and says so by name.

Underneath, PostgreSQL's row-level security (migration 0008) holds every statement to the same tenant, raw SQL
included: each transaction a session begins first sets `deskbell.tenant_id` (or `deskbell.system`), local to that
transaction, and the engine's connections run as the role `deskbell_app`, which the policies bind
(docs/architecture.md, "Tenant scoping"; docs/operations.md, "Row-level security").
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, partial
from typing import Any

import psycopg
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker, with_loader_criteria
from sqlalchemy.pool import ConnectionPoolEntry

from desk import settings
from desk.models import TenantScoped

log = logging.getLogger(__name__)

# A pooled connection idle longer than this is pinged before use (see _ping_if_idle).
PING_IDLE_SECONDS = 1.0
# PostgreSQL connections a process holds at most (see engine()); plan max_connections for 20 per process.
POOL_SIZE = 20

# The role the policies of migration 0008 bind; a superuser or BYPASSRLS login would ignore them.
APP_ROLE = "deskbell_app"
# Whether this connection may and should become APP_ROLE: the role exists, this login may SET ROLE to it, and it
# was granted this database's tables (a database not yet at 0008 keeps the login role, as before).
_APP_ROLE_STATE = f"""
SELECT CASE WHEN to_regrole('{APP_ROLE}') IS NULL OR to_regclass('public.messages') IS NULL THEN false
            ELSE pg_has_role(current_user, '{APP_ROLE}', 'MEMBER')
                 AND has_table_privilege('{APP_ROLE}', 'public.messages', 'SELECT') END,
       current_user = '{APP_ROLE}',
       (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
"""
_SET_TENANT = "SELECT set_config('deskbell.tenant_id', %s, true), set_config('deskbell.system', 'off', true)"
_SET_SYSTEM = "SELECT set_config('deskbell.tenant_id', '', true), set_config('deskbell.system', 'on', true)"


class TenantError(RuntimeError):
    """A session without a tenant touched tenant data, or a row crossed tenants."""


@cache
def engine(url: str | None = None) -> Engine:
    url = url or settings.load().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set (the dev runner sets it for the embedded PostgreSQL).")
    # Up to POOL_SIZE connections a process, each kept once opened: a web process's 16 Flask threads and its edge's
    # executor reach that under a burst, and overflow connections (opened, then closed on return) cost PostgreSQL
    # a backend start and this process a SET ROLE each: 200 of them in a storm of 2,000 visitors with 10 + 10.
    # LIFO: the connection used last goes out next, so under a light load the same few stay warm (no idle ping)
    # and the rest sit unused.
    created = create_engine(settings.sqlalchemy_url(url), pool_size=POOL_SIZE, max_overflow=0, pool_use_lifo=True)
    event.listen(created, "connect", _become_app_role)
    event.listen(created, "connect", _plan_each_statement)
    event.listen(created, "checkin", _note_checkin)
    event.listen(created, "checkout", partial(_ping_if_idle, created.dialect))
    return created


def _note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dialect: Dialect, dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: object) -> None:
    """`pool_pre_ping`, only for a connection that sat in the pool over PING_IDLE_SECONDS: a connection taken
    back within a second (every one under load) was working a moment ago, and the ping is a round trip on each
    transaction. A dead connection is replaced (the pool retries checkout on DisconnectionError); one that dies
    between two busy uses fails its statement, which invalidates the pool as any lost connection does."""
    idle_since = record.info.get("checked_in_at")
    if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
        return
    try:
        alive = dialect.do_ping(dbapi_connection)
    except Exception as exc:
        raise sqlalchemy.exc.DisconnectionError(str(exc)) from exc
    if not alive:
        raise sqlalchemy.exc.DisconnectionError("the connection did not answer a ping")


def _plan_each_statement(dbapi_connection: Any, _record: object) -> None:
    """Plan every statement for its own values. psycopg prepares a statement run five times, and PostgreSQL then
    keeps one generic plan per connection, made for no tenant in particular and with the statistics of that
    moment: the store's lookup of a message by (visitor, client_id), prepared while a new tenant had a few rows,
    kept scanning all of that tenant's messages by tenant_id (36 ms instead of 0.3 ms at 4,100 messages, growing
    with them). Tenants differ in size by orders of magnitude, so no plan fits them all; planning costs a fraction
    of a millisecond."""
    dbapi_connection.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


def _become_app_role(dbapi_connection: Any, _record: object) -> None:
    """SET ROLE deskbell_app on each new connection, so row-level security binds the application whatever it
    logs in as; the session-level setting stays for the connection's life in the pool. Alembic has its own
    engine and migrates as the login role."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute(_APP_ROLE_STATE)
        switch, already, bypasses = cursor.fetchone()
    dbapi_connection.commit()
    if switch:
        try:
            dbapi_connection.execute(f"SET ROLE {APP_ROLE}")
            dbapi_connection.commit()
            return
        except psycopg.Error:  # PostgreSQL 16+: a member granted WITH SET FALSE
            dbapi_connection.rollback()
    if not already and bypasses:
        _warn_unprotected()


@cache
def _warn_unprotected() -> None:
    log.warning(
        "the database login is a superuser or has BYPASSRLS and cannot become %s: row-level security does not "
        "apply to this process (docs/operations.md, 'Row-level security')",
        APP_ROLE,
    )


@cache
def _factory(url: str | None) -> sessionmaker[Session]:
    return sessionmaker(engine(url), expire_on_commit=False)


@contextmanager
def tenant_session(tenant_id: uuid.UUID | str, url: str | None = None) -> Iterator[Session]:
    """A session that sees and writes only `tenant_id`'s rows. Commit is the caller's."""
    with _factory(url)() as session:
        session.info["tenant_id"] = uuid.UUID(str(tenant_id))
        yield session


@contextmanager
def system_session(url: str | None = None) -> Iterator[Session]:
    """A session that crosses tenants on purpose (installation tasks, looking up the tenant of a key)."""
    with _factory(url)() as session:
        session.info["system"] = True
        yield session


@event.listens_for(Session, "after_begin")
def _set_transaction_scope(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    """Tell PostgreSQL whose transaction this is, before its first statement. Local to the transaction, so a
    pooled connection carries nothing to its next user; a session that commits and goes on gets it again here."""
    tenant_id = session.info.get("tenant_id")
    if tenant_id is not None:
        connection.exec_driver_sql(_SET_TENANT, (str(tenant_id),))
    elif session.info.get("system"):
        connection.exec_driver_sql(_SET_SYSTEM)


@event.listens_for(Session, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None:
        if state.session.info.get("system"):
            return
        raise TenantError("a query ran in a session with no tenant; use tenant_session() or system_session()")
    state.statement = state.statement.options(
        with_loader_criteria(TenantScoped, lambda cls: cls.tenant_id == tenant_id, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _stamp_tenant(session: Session, _ctx: object, _instances: object) -> None:
    tenant_id = session.info.get("tenant_id")
    if tenant_id is None and session.info.get("system"):
        return
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, TenantScoped):
            continue
        if tenant_id is None:
            raise TenantError("tenant rows written in a session with no tenant; use tenant_session()")
        if obj.tenant_id is None:
            obj.tenant_id = tenant_id
        elif obj.tenant_id != tenant_id:
            raise TenantError(f"{type(obj).__name__} of another tenant in a session of tenant {tenant_id}")
