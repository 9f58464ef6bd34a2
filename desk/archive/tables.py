"""A tenant's tables and rows as an archive holds them (docs/operations.md, "Export, import, backup").

The tables come from the model's metadata: every table with a `tenant_id` column, plus `tenants` itself, in
foreign-key order, so a table added later is exported and imported without a change here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import BigInteger, ColumnElement, Integer, Table, case, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import Select

from desk.models import Base

# Activity in time: a ranged export takes the rows of these created in the range (see `Scope`).
DATED = ("conversations", "audit_log")


@dataclass(frozen=True)
class Scope:
    """Which rows an export takes: one tenant's, and with `since`/`until` only the conversations created in that
    half-open range, with their visitors, messages, events and files, and the audit entries of the range. Settings
    (sites, users, teams, saved replies, labels...) are always taken whole."""

    tenant_id: uuid.UUID
    since: datetime | None = None
    until: datetime | None = None

    @property
    def ranged(self) -> bool:
        return self.since is not None or self.until is not None


def tenant_tables() -> list[Table]:
    """`tenants` and every table with a `tenant_id`, parents before children."""
    return [t for t in Base.metadata.sorted_tables if t.name == "tenants" or "tenant_id" in t.c]


def primary_key(table: Table) -> list[Any]:
    return list(table.primary_key.columns)


def serial_key(table: Table) -> Any | None:
    """The single integer primary key a sequence fills (messages.id, conversation_events.id, audit_log.id)."""
    [*columns] = table.primary_key.columns
    if len(columns) == 1 and isinstance(columns[0].type, Integer | BigInteger) and columns[0].autoincrement:
        return columns[0]
    return None


def tenant_of(table: Table) -> Any:
    return table.c.id if table.name == "tenants" else table.c.tenant_id


def _restricted(table: Table, scope: Scope) -> bool:
    """Does a ranged export take only some of this tenant's rows of `table`?"""
    if not scope.ranged:
        return False
    if table.name in DATED or table.name == "visitors":
        return True
    return any(_restricted(fk.column.table, scope) for fk in _required_parents(table))


def _required_parents(table: Table) -> list[Any]:
    """The NOT NULL foreign keys to other tenant tables: a row is exported only with the rows they point at."""
    return [
        fk
        for fk in table.foreign_keys
        if not fk.parent.nullable and fk.parent.name != "tenant_id" and fk.column.table is not table
    ]


def where(table: Table, scope: Scope) -> list[ColumnElement[bool]]:
    """The conditions on `table`'s rows that `scope` takes."""
    conditions: list[ColumnElement[bool]] = [tenant_of(table) == scope.tenant_id]
    if not scope.ranged or table.name == "tenants":
        return conditions
    if table.name in DATED:
        if scope.since is not None:
            conditions.append(table.c.created_at >= scope.since)
        if scope.until is not None:
            conditions.append(table.c.created_at < scope.until)
        return conditions
    if table.name == "visitors":  # the visitors of the conversations taken
        conversations = Base.metadata.tables["conversations"]
        taken = select(conversations.c.visitor_id).where(*where(conversations, scope))
        return [*conditions, table.c.id.in_(taken)]
    for fk in _required_parents(table):
        parent = fk.column.table
        if _restricted(parent, scope):
            conditions.append(fk.parent.in_(select(fk.column).where(*where(parent, scope))))
    return conditions


def _exported_column(table: Table, column: Any, scope: Scope) -> Any:
    """A nullable reference to another tenant table is kept only when the archive holds the row it points at
    (a user of another tenant, a conversation outside the range): an archive never points outside itself."""
    targets = [fk.column for fk in column.foreign_keys if fk.column.table is not table]
    if not column.nullable or column.name == "tenant_id" or not targets:
        return column
    [target] = targets
    inside = select(target).where(*where(target.table, scope))
    return case((column.in_(inside), column), else_=None).label(column.name)


def rows_query(table: Table, scope: Scope) -> Select[Any]:
    """`table`'s rows that `scope` takes, in primary-key order."""
    columns = [_exported_column(table, c, scope) for c in table.c]
    return select(*columns).where(*where(table, scope)).order_by(*primary_key(table))


def count_query(table: Table, scope: Scope) -> Select[Any]:
    from sqlalchemy import func

    return select(func.count()).select_from(table).where(*where(table, scope))


# -- rows as canonical JSON ------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"no canonical JSON for {type(value).__name__}")


def dumps(row: dict[str, Any]) -> bytes:
    """One row as one line of UTF-8: keys sorted, no spaces, UUIDs as strings, times in ISO 8601 (UTC when the
    connection's time zone is UTC, as the export's is)."""
    return orjson.dumps(row, default=_plain, option=orjson.OPT_SORT_KEYS)


def copy_converters(columns: list[Any]) -> list[Any]:
    """For each column, how a value read back from an archive line goes into PostgreSQL's COPY (text format):
    JSON columns as JSON text, everything else as it is (COPY parses UUIDs and times from their text)."""
    return [_json_text if isinstance(c.type, JSONB) else None for c in columns]


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
