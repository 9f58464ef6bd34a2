"""Visitor identity and context: external_id (unique per site when set), context and trail.

Expand-only: new columns are nullable or have server defaults, so code of revision 0001 keeps working.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 15:00:24.707914
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("visitors", sa.Column("external_id", sa.String(length=200), nullable=True))
    op.add_column(
        "visitors",
        sa.Column("context", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
    )
    op.add_column(
        "visitors",
        sa.Column("trail", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
    )
    # Every existing row has external_id NULL, and NULLs are distinct: the constraint cannot fail on old data.
    op.create_unique_constraint("uq_visitors_site_external_id", "visitors", ["site_id", "external_id"])


def downgrade() -> None:
    op.drop_constraint("uq_visitors_site_external_id", "visitors", type_="unique")
    op.drop_column("visitors", "trail")
    op.drop_column("visitors", "context")
    op.drop_column("visitors", "external_id")
