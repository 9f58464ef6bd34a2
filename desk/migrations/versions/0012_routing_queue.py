"""Routing: capacity-aware assignment, the per-team queue, assignment timeouts, missed chats.

Additive only (the previous code runs on this schema): nullable columns on `conversations`, and a partial index
for the queue, built CONCURRENTLY so a busy table is not locked while it is built. docs/architecture.md,
"Routing and the queue".

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 21:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TIMES = ("queued_at", "assigned_at", "opened_at", "missed_at", "auto_resolved_at")
QUEUE_INDEX = "ix_conversations_queue"


def upgrade() -> None:
    for name in TIMES:
        op.execute(f"ALTER TABLE conversations ADD COLUMN IF NOT EXISTS {name} timestamptz")
    op.execute(
        "ALTER TABLE conversations ADD COLUMN IF NOT EXISTS passed_over_id uuid "
        "REFERENCES users(id) ON DELETE SET NULL"
    )
    with op.get_context().autocommit_block():
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {QUEUE_INDEX} ON conversations "
            "(tenant_id, team_id, queued_at) WHERE status = 'open' AND assignee_id IS NULL"
        )


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {QUEUE_INDEX}")
    for name in (*TIMES, "passed_over_id"):
        op.drop_column("conversations", name)

