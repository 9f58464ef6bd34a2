"""Two indexes for large tenants (issue 5, measured on 100,000 conversations / 1,000,000 messages):

- ix_conversations_unassigned_activity: the console's "Unassigned" list of a status with few unassigned rows
  walked the whole status range of ix_conversations_tenant_status_activity (7,100 buffers, 13.6 ms for an empty
  resolved page); this partial index reads only unassigned rows (0.02 ms).
- ix_messages_conversation_seq: a pane's thread, newest first by seq, without sorting a long thread.

Expand-only, built CONCURRENTLY (outside a transaction) so that a running installation keeps writing while they
are built; the previous code runs on this schema unchanged.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 00:35:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_conversations_unassigned_activity",
            "conversations",
            ["tenant_id", "status", "last_activity_at"],
            postgresql_where=sa.text("assignee_id IS NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_messages_conversation_seq",
            "messages",
            ["conversation_id", "seq"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_messages_conversation_seq", table_name="messages", postgresql_concurrently=True)
        op.drop_index("ix_conversations_unassigned_activity", table_name="conversations", postgresql_concurrently=True)
