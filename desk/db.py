"""Engine, sessions and tenant scoping: the one place where a query is limited to a tenant.

A session opened with `tenant_session(tenant_id)` adds `tenant_id = :tenant` to every ORM SELECT, UPDATE and DELETE
on a TenantScoped class, and refuses to flush a row of another tenant. Code that must cross tenants (logging in
by email, finding a site by its public key, `deskbell bootstrap`) opens `system_session()` and says so by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from desk import settings
from desk.models import TenantScoped


class TenantError(RuntimeError):
    """A session without a tenant touched tenant data, or a row crossed tenants."""


@cache
def engine(url: str | None = None) -> Engine:
    url = url or settings.load().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set (the dev runner sets it for the embedded PostgreSQL).")
    return create_engine(settings.sqlalchemy_url(url), pool_pre_ping=True, pool_size=10, max_overflow=10)


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
