"""Row-level security (migration 0008, desk/db.py): even raw SQL in a tenant's session stays in that tenant.

The ORM's scoping is bypassed on purpose here: every statement is `text()`, the kind of query a mistake would
write, and PostgreSQL alone keeps tenant B's rows out of tenant A's session.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from desk.db import APP_ROLE, engine, system_session, tenant_session
from desk.models import MESSAGE_SEARCH_DOCUMENT, VISITOR_SEARCH_DOCUMENT
from tests.factories import new_conversation, new_tenant

TENANT_TABLES_WITHOUT_RLS: set[str] = set()  # none: every table with a tenant_id column is bound


@pytest.fixture
def a(database_url: str) -> uuid.UUID:
    tenant = new_tenant()
    new_conversation(tenant)
    return tenant


@pytest.fixture
def b(database_url: str) -> uuid.UUID:
    tenant = new_tenant()
    new_conversation(tenant)
    return tenant


def tenants_of(session: Session, table: str) -> set[uuid.UUID]:
    return set(session.scalars(text(f"SELECT DISTINCT tenant_id FROM {table}")))


def test_the_application_runs_as_the_role_the_policies_bind(database_url: str) -> None:
    with engine().connect() as connection:
        login, current = connection.execute(text("SELECT session_user, current_user")).one()
    assert (login, current) == ("postgres", APP_ROLE)


def test_every_table_with_a_tenant_id_has_row_level_security_forced_and_a_policy(database_url: str) -> None:
    with engine().connect() as connection:
        tables = {t for t in inspect(connection).get_table_names() if "tenant_id" in _columns(connection, t)}
        bound = dict(
            connection.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity"
                    " AND EXISTS (SELECT FROM pg_policies p WHERE p.tablename = c.relname)"
                    " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
                )
            ).all()
        )
    assert "messages" in tables and "audit_log" in tables
    assert {t for t in tables if not bound[t]} == TENANT_TABLES_WITHOUT_RLS
    assert bound["tenants"]


def _columns(connection: object, table: str) -> set[str]:
    return {c["name"] for c in inspect(connection).get_columns(table)}


def test_raw_select_in_a_tenants_session_returns_only_its_rows(a: uuid.UUID, b: uuid.UUID) -> None:
    with tenant_session(a) as session:
        for table in ("sites", "users", "visitors", "conversations", "messages"):
            assert tenants_of(session, table) == {a}, table
        theirs = session.execute(text("SELECT id FROM messages WHERE tenant_id = :b"), {"b": b}).all()
        tenant_rows = set(session.scalars(text("SELECT id FROM tenants")))
    assert theirs == []
    assert tenant_rows == {a}


def test_raw_update_and_delete_do_not_reach_another_tenant(a: uuid.UUID, b: uuid.UUID) -> None:
    with system_session() as session:
        before = session.execute(text("SELECT id, body FROM messages WHERE tenant_id = :b"), {"b": b}).all()
    with tenant_session(a) as session:
        updated = session.execute(text("UPDATE messages SET body = 'overwritten' WHERE tenant_id = :b"), {"b": b})
        deleted = session.execute(text("DELETE FROM conversations WHERE tenant_id <> :a"), {"a": a})
        renamed = session.execute(text("UPDATE tenants SET name = 'taken' WHERE id = :b"), {"b": b})
        session.commit()
    assert (updated.rowcount, deleted.rowcount, renamed.rowcount) == (0, 0, 0)
    with system_session() as session:
        after = session.execute(text("SELECT id, body FROM messages WHERE tenant_id = :b"), {"b": b}).all()
        conversations = session.scalar(text("SELECT count(*) FROM conversations WHERE tenant_id = :b"), {"b": b})
    assert after == before and before
    assert conversations == 1


def test_a_row_for_another_tenant_is_refused(a: uuid.UUID, b: uuid.UUID) -> None:
    insert = "INSERT INTO canned_responses (id, tenant_id, shortcut, body) VALUES (:id, :t, 'hi', 'Hello')"
    with tenant_session(a) as session, pytest.raises(ProgrammingError, match="row-level security"):
        session.execute(text(insert), {"id": uuid.uuid4(), "t": b})
    with tenant_session(a) as session, pytest.raises(ProgrammingError, match="row-level security"):
        session.execute(text("UPDATE visitors SET tenant_id = :b"), {"b": b})  # moving our rows over
    with tenant_session(a) as session, pytest.raises(ProgrammingError, match="row-level security"):
        session.execute(text("INSERT INTO tenants (id, name, slug) VALUES (:id, 'x', :slug)"), _tenant_row())


def _tenant_row() -> dict[str, object]:
    return {"id": uuid.uuid4(), "slug": f"t-{uuid.uuid4().hex[:8]}"}


def test_a_session_without_a_tenant_sees_nothing(a: uuid.UUID) -> None:
    with Session(engine()) as session:
        counts = [session.scalar(text(f"SELECT count(*) FROM {t}")) for t in ("tenants", "messages", "users")]
    assert counts == [0, 0, 0]


def test_the_system_session_sees_every_tenant(a: uuid.UUID, b: uuid.UUID) -> None:
    with system_session() as session:
        assert {a, b} <= tenants_of(session, "messages")
        assert {a, b} <= set(session.scalars(text("SELECT id FROM tenants")))


def test_the_tenant_is_set_again_after_a_commit_and_never_carried_to_the_next_session(
    a: uuid.UUID, b: uuid.UUID
) -> None:
    with tenant_session(a) as session:
        session.execute(text("UPDATE visitors SET name = 'Seen' WHERE name IS NULL"))
        session.commit()
        after_commit = tenants_of(session, "visitors")
        session.rollback()
        after_rollback = tenants_of(session, "messages")
    with Session(engine()) as session:  # likely the same pooled connection
        leftover = session.scalar(text("SELECT current_setting('deskbell.tenant_id', true)"))
        seen = session.scalar(text("SELECT count(*) FROM messages"))
    assert after_commit == after_rollback == {a}
    assert (leftover or "", seen) == ("", 0)


def test_the_audit_log_is_append_only_for_the_application(a: uuid.UUID) -> None:
    with tenant_session(a) as session:
        session.execute(text("INSERT INTO audit_log (tenant_id, action) VALUES (:a, 'test.append')"), {"a": a})
        session.commit()
        with pytest.raises(DBAPIError, match="permission denied"):
            session.execute(text("DELETE FROM audit_log WHERE action = 'test.append'"))
    with system_session() as session, pytest.raises(DBAPIError, match="permission denied"):
        session.execute(text("UPDATE audit_log SET action = 'rewritten'"))


@pytest.mark.parametrize(
    ("table", "document", "index"),
    [
        ("messages", MESSAGE_SEARCH_DOCUMENT, "ix_messages_body_fts"),
        ("visitors", VISITOR_SEARCH_DOCUMENT, "ix_visitors_search_fts"),
    ],
)
def test_full_text_search_still_uses_its_index_under_row_level_security(
    a: uuid.UUID, table: str, document: str, index: str
) -> None:
    """A function PostgreSQL does not know to be leakproof runs after the policy, row by row; migration 0008
    marks the search's functions, so the console's search stays an index lookup."""
    with tenant_session(a) as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            session.scalars(text(f"EXPLAIN SELECT id FROM {table} WHERE {document} @@ to_tsquery('simple', 'rare')"))
        )
    assert index in plan, plan
