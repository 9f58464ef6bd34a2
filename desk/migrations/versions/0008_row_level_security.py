"""Row-level security under the ORM's tenant scoping, and the role the application runs as.

Every tenant-owned table gets ENABLE and FORCE ROW LEVEL SECURITY and one policy: a row is visible and writable
only when its tenant_id is the transaction's `deskbell.tenant_id`, or when the transaction is a system session
(`deskbell.system = 'on'`). desk/db.py sets both per transaction (docs/architecture.md, "Tenant scoping").

Superusers and BYPASSRLS roles ignore every policy, so the migration also makes (when it may) the NOLOGIN role
deskbell_app with just the privileges the application needs; desk/db.py switches to it on connect. Without
CREATEROLE the role is skipped with a notice: FORCE still holds the tables' owner to the policies, and a DBA can
make the role later (docs/operations.md, "Row-level security").

The tables are listed here as they are at this revision, not read from desk.models: this migration must do the
same thing whatever the models become. A later migration that adds a tenant-owned table adds its policy itself
(tests/security/test_rls.py fails until it does). Every statement can run twice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 18:10:00.000000
"""

from __future__ import annotations

import logging

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

APP_ROLE = "deskbell_app"
# Tables with a tenant_id NOT NULL column at revision 0007.
TENANT_TABLES = (
    "sites",
    "users",
    "teams",
    "team_members",
    "visitors",
    "conversations",
    "messages",
    "conversation_events",
    "canned_responses",
    "attachments",
    "invites",
    "api_keys",
    "labels",
    "schedules",
)
# Sequences behind the bigint primary keys.
SEQUENCES = ("messages_id_seq", "conversation_events_id_seq", "audit_log_id_seq")

# The functions in the full-text search's WHERE clauses (desk/queries/search.py, models.*_SEARCH_DOCUMENT). Under
# row-level security PostgreSQL evaluates a non-LEAKPROOF function only after the policy, so it cannot use an
# index for it: without these marks a search for a rare word reads the tenant's messages row by row (9.1 s instead
# of 0.4 s for 150,000 messages). None of them can raise an error that depends on a row's content (a body is
# capped by the frame limit, far below tsvector's 1 MB). The marks hold in this database only; only a superuser
# may set them.
LEAKPROOF = ("ts_match_vq(tsvector, tsquery)", "to_tsvector(regconfig, text)", "textcat(text, text)")

# The visitor search's document without COALESCE, which the planner counts as leaky whatever its arguments: the same
# text, NULLs as '' (models.VISITOR_SEARCH_DOCUMENT). The index is rebuilt on it, CONCURRENTLY.
VISITOR_DOCUMENT = (
    "to_tsvector('simple', (CASE WHEN name IS NULL THEN '' ELSE name END) || ' ' || "
    "(CASE WHEN email IS NULL THEN '' ELSE email END) || ' ' || "
    "(CASE WHEN external_id IS NULL THEN '' ELSE external_id END))"
)
VISITOR_DOCUMENT_0006 = (
    "to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(external_id, ''))"
)

# '' after a transaction that set it has ended, NULL before any did: both mean "no tenant" (and match no row).
TENANT = "nullif(current_setting('deskbell.tenant_id', true), '')::uuid"
SYSTEM = "current_setting('deskbell.system', true) = 'on'"
POLICY = "tenant_isolation"


def _policy(table: str, name: str, clause: str) -> None:
    op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    op.execute(f"CREATE POLICY {name} ON {table} {clause}")


def _protect(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")


def upgrade() -> None:
    mine = f"(tenant_id = {TENANT} OR {SYSTEM})"
    for table in TENANT_TABLES:
        _protect(table)
        _policy(table, POLICY, f"USING {mine} WITH CHECK {mine}")

    # Installation events (tenant_id NULL) are seen and written by system sessions only.
    _protect("audit_log")
    _policy("audit_log", POLICY, f"USING {mine} WITH CHECK {mine}")

    # A tenant session reads and updates its own tenant's row (its settings); making and deleting tenants, and
    # reading any other, is for system sessions.
    own = f"(id = {TENANT} OR {SYSTEM})"
    _protect("tenants")
    _policy("tenants", "tenant_self_read", f"FOR SELECT USING {own}")
    _policy("tenants", "tenant_self_update", f"FOR UPDATE USING {own} WITH CHECK {own}")
    _policy("tenants", "tenant_system_insert", f"FOR INSERT WITH CHECK ({SYSTEM})")
    _policy("tenants", "tenant_system_delete", f"FOR DELETE USING ({SYSTEM})")

    _create_app_role()
    _grant_app_role()
    _mark_leakproof(True)
    _rebuild_visitor_index(VISITOR_DOCUMENT, "CASE WHEN")


def _rebuild_visitor_index(document: str, marker: str) -> None:
    """ix_visitors_search_fts on `document`, unless its definition already has `marker`; the old index serves
    until the new one is built (the previous code's searches only get slower: expand-only)."""
    current = op.get_bind().exec_driver_sql("SELECT pg_get_indexdef(to_regclass('ix_visitors_search_fts'))").scalar()
    if current and marker in current:
        return
    # Outside the migration's transaction: CONCURRENTLY cannot run inside one.
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_visitors_search_fts_new")  # an interrupted earlier try
        op.execute(f"CREATE INDEX CONCURRENTLY ix_visitors_search_fts_new ON visitors USING gin (({document}))")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_visitors_search_fts")
        op.execute("ALTER INDEX ix_visitors_search_fts_new RENAME TO ix_visitors_search_fts")


def _mark_leakproof(on: bool) -> None:
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar():
        for function in LEAKPROOF:
            op.execute(f"ALTER FUNCTION pg_catalog.{function} {'' if on else 'NOT '}LEAKPROOF")
    elif on:
        log.warning(
            "not a superuser: full-text search cannot use its indexes under row-level security until a superuser "
            "runs, in this database: %s",
            " ".join(f"ALTER FUNCTION pg_catalog.{f} LEAKPROOF;" for f in LEAKPROOF),
        )


def _create_app_role() -> None:
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        EXCEPTION
            -- Another database's migration on the same server made it a moment ago.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'no CREATEROLE: role {APP_ROLE} not made; the tables owner is held by FORCE';
        END $$
    """)


def _grant_app_role() -> None:
    """All of the grants or none of them (one block, one subtransaction)."""
    tables = ", ".join(("tenants", *TENANT_TABLES))
    statements = [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {APP_ROLE}",
        # Append-only from the application's point of view (issue 6): no UPDATE or DELETE of an entry.
        f"GRANT SELECT, INSERT ON audit_log TO {APP_ROLE}",
        f"GRANT SELECT ON alembic_version TO {APP_ROLE}",  # /readyz compares the level
        f"GRANT USAGE, SELECT ON {', '.join(SEQUENCES)} TO {APP_ROLE}",
        # Tables and sequences later migrations make (run by this same login role) are granted as they are made;
        # a tenant-owned one still needs its policy (see the module's docstring).
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}",
    ]
    body = "\n".join(f"EXECUTE '{s}';" for s in statements)
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                RETURN;
            END IF;
            {body}
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'could not grant {APP_ROLE} its privileges: %', SQLERRM;
        END $$
    """)
    # PUBLIC has USAGE on the schema unless a DBA revoked it; granting it needs the schema's owner.
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                EXECUTE 'GRANT USAGE ON SCHEMA public TO {APP_ROLE}';
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END $$
    """)
    # A login role that is not a superuser needs membership to SET ROLE (a superuser has it anyway).
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}')
               AND NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
                EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'could not grant {APP_ROLE} to %: the application will run as its login role', current_user;
        END $$
    """)
    ready = op.get_bind().exec_driver_sql(
        f"SELECT CASE WHEN to_regrole('{APP_ROLE}') IS NULL THEN false "
        f"ELSE has_table_privilege('{APP_ROLE}', 'messages', 'SELECT') END"
    )
    if not ready.scalar():
        log.warning(
            "row-level security is on, but role %s was not made or granted (no CREATEROLE?): a superuser or "
            "BYPASSRLS login will not be held to it; see docs/operations.md, 'Row-level security'",
            APP_ROLE,
        )


def downgrade() -> None:
    _rebuild_visitor_index(VISITOR_DOCUMENT_0006, "COALESCE")
    _mark_leakproof(False)
    # The role is the server's, not this database's (other databases may use it): only its grants here go.
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {APP_ROLE}';
                EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {APP_ROLE}';
                EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}';
                EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}';
                EXECUTE 'REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}';
            END IF;
        END $$
    """)
    for name in ("tenant_self_read", "tenant_self_update", "tenant_system_insert", "tenant_system_delete"):
        op.execute(f"DROP POLICY IF EXISTS {name} ON tenants")
    for table in ("tenants", "audit_log", *TENANT_TABLES):
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
