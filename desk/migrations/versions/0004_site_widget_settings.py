"""The widget's settings per site: sites.widget (welcome text per language, colour, position).

Expand-only: a NOT NULL JSONB column with a server default (a metadata-only change in PostgreSQL 11+), so code of
revision 0003 keeps working.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 15:37:04.645825
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sites",
        sa.Column("widget", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("sites", "widget")
