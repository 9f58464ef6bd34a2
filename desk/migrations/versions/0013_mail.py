"""Mail: each tenant's SMTP settings, the visitors who are answered by email, and every email sent or to send.

Expand-only (the previous code runs on this schema): three new tables, each tenant-owned, so each gets 0008's
row-level security policy and the grants for deskbell_app here. docs/architecture.md, "Email".

- mail_settings: one row per tenant; the password Fernet-encrypted under SECRET_KEY (desk/mail_settings.py).
- mail_threads: a visitor whose conversation goes on by email (an offline message, an email reply): agents'
  replies to them are emailed. `mailed_seq` is how far the mailer has looked at their thread.
- mail_deliveries: one row per email, unique by `key` in its tenant (`reply:<message id>`, `missed:<conversation>`,
  `transcript:<request>`), so an email is queued once and sent once (desk/mail_outbox.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 21:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

APP_ROLE = "deskbell_app"
TABLES = ("mail_settings", "mail_threads", "mail_deliveries")
SEQUENCES = ("mail_deliveries_id_seq",)
POLICY = "tenant_isolation"
# As in 0008: '' after a transaction that set it has ended, NULL before any did: both mean "no tenant".
TENANT = "nullif(current_setting('deskbell.tenant_id', true), '')::uuid"
SYSTEM = "current_setting('deskbell.system', true) = 'on'"


def _tenant_id() -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)


def _now() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _policy(table: str, name: str, clause: str) -> None:
    op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    op.execute(f"CREATE POLICY {name} ON {table} {clause}")


def _protect(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")


def upgrade() -> None:
    op.create_table(
        "mail_settings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant_id(),
        sa.Column("host", sa.String(253), nullable=False, server_default=""),
        sa.Column("port", sa.Integer(), nullable=False, server_default="587"),
        sa.Column("security", sa.String(16), nullable=False, server_default="starttls"),
        sa.Column("username", sa.String(320), nullable=False, server_default=""),
        sa.Column("password_encrypted", sa.Text(), nullable=False, server_default=""),
        sa.Column("from_address", sa.String(320), nullable=False, server_default=""),
        sa.Column("from_name", sa.String(200), nullable=False, server_default=""),
        _now(),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("tenant_id", name="uq_mail_settings_tenant"),
    )
    op.create_table(
        "mail_threads",
        sa.Column("visitor_id", sa.Uuid(), sa.ForeignKey("visitors.id", ondelete="CASCADE"), primary_key=True),
        _tenant_id(),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("mailed_seq", sa.Integer(), nullable=False, server_default="0"),
        _now(),
    )
    op.create_index("ix_mail_threads_tenant_id", "mail_threads", ["tenant_id"])
    op.create_table(
        "mail_deliveries",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        _tenant_id(),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "conversation_id", sa.Uuid(), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("recipients", postgresql.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        _now(),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("tenant_id", "key", name="uq_mail_deliveries_key"),
    )
    op.create_index("ix_mail_settings_tenant_id", "mail_settings", ["tenant_id"])
    op.create_index("ix_mail_deliveries_tenant_id", "mail_deliveries", ["tenant_id"])
    # The mailer's sweep looks for queued emails not yet handed to JetStream (desk/mail_outbox.py).
    op.create_index(
        "ix_mail_deliveries_queued",
        "mail_deliveries",
        ["published_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    mine = f"(tenant_id = {TENANT} OR {SYSTEM})"
    for table in TABLES:
        _protect(table)
        _policy(table, POLICY, f"USING {mine} WITH CHECK {mine}")
    # 0008's default privileges cover tables this login role makes; granted here too for a role a DBA made later.
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {", ".join(TABLES)} TO {APP_ROLE}';
                EXECUTE 'GRANT USAGE, SELECT ON {", ".join(SEQUENCES)} TO {APP_ROLE}';
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'could not grant {APP_ROLE} the mail tables: %', SQLERRM;
        END $$
    """)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
