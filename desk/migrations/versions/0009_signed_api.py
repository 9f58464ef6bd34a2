"""Server-to-server API: nonces seen, so a signed request cannot be replayed.

Expand-only: one new table. `api_nonces` holds no tenant's data (a key id, a random string and when it may be
forgotten) and is read and written before the request's tenant is trusted, by system sessions only, so like
`login_throttles` it has no tenant_id and no row-level security policy. Its rows go with their key (ON DELETE
CASCADE), and web/api/auth.py deletes the expired ones as it goes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

APP_ROLE = "deskbell_app"


def upgrade() -> None:
    op.create_table(
        "api_nonces",
        sa.Column("key_id", sa.Uuid(), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key_id", "nonce"),
    )
    op.create_index("ix_api_nonces_expires_at", "api_nonces", ["expires_at"])
    # 0008's default privileges cover tables this login role makes; granted here too for a role a DBA made later.
    op.execute(f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON api_nonces TO {APP_ROLE}';
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'could not grant {APP_ROLE} api_nonces: %', SQLERRM;
        END $$
    """)


def downgrade() -> None:
    op.drop_index("ix_api_nonces_expires_at", table_name="api_nonces")
    op.drop_table("api_nonces")
