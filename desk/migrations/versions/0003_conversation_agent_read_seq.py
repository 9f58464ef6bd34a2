"""Read receipts: conversations.agent_read_seq, the highest seq an agent has read.

Expand-only: a NOT NULL column with a server default (a metadata-only change in PostgreSQL 11+), so code of
revision 0002 keeps working.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 15:17:54.260042
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("agent_read_seq", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("conversations", "agent_read_seq")
