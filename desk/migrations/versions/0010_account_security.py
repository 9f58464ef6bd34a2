"""Account security: login attempts and lockout, session revocation, two-factor (TOTP).

Expand-only: new columns on users with server defaults or nullable, and a new table. `login_throttles` belongs to
no tenant (it is keyed by the email typed and the address, before anyone is known), so it has no tenant_id and no
row-level security policy; only system sessions use it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

APP_ROLE = "deskbell_app"


def upgrade() -> None:
    op.add_column("users", sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))
    op.add_column("users", sa.Column("totp_secret_encrypted", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("totp_enabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.add_column(
        "users",
        sa.Column("recovery_codes", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
    )
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    # 0008's default privileges cover tables this login role makes; granted here too for a role a DBA made later.
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttles TO {APP_ROLE}';
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'could not grant {APP_ROLE} login_throttles: %', SQLERRM;
        END $$
    """)


def downgrade() -> None:
    op.drop_table("login_throttles")
    for column in ("recovery_codes", "totp_last_step", "totp_enabled_at", "totp_secret_encrypted", "session_epoch"):
        op.drop_column("users", column)
