"""The console: statuses, teams, private notes and other conversation events, canned responses, search.

Expand-only: new tables, nullable columns or columns with a server default; code of revision 0005 keeps
working. The indexes on the big tables (messages, visitors, conversations) are built CONCURRENTLY, so the
upgrade never blocks the store worker's inserts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 16:36:15.640086
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_teams_tenant_name"),
    )
    op.create_index(op.f("ix_teams_tenant_id"), "teams", ["tenant_id"], unique=False)
    op.create_table(
        "canned_responses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("shortcut", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_canned_responses_tenant_id"), "canned_responses", ["tenant_id"], unique=False)
    op.create_index(
        "uq_canned_owner_shortcut",
        "canned_responses",
        ["owner_id", "shortcut"],
        unique=True,
        postgresql_where=sa.text("owner_id IS NOT NULL"),
    )
    op.create_index(
        "uq_canned_tenant_shortcut",
        "canned_responses",
        ["tenant_id", "shortcut"],
        unique=True,
        postgresql_where=sa.text("owner_id IS NULL"),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("team_id", "user_id"),
    )
    op.create_index(op.f("ix_team_members_tenant_id"), "team_members", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_team_members_user_id"), "team_members", ["user_id"], unique=False)
    op.create_table(
        "conversation_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=True),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_conversation_events_conversation", "conversation_events", ["conversation_id", "id"], unique=False
    )
    op.create_index(op.f("ix_conversation_events_tenant_id"), "conversation_events", ["tenant_id"], unique=False)
    op.add_column("conversations", sa.Column("team_id", sa.Uuid(), nullable=True))
    op.add_column(
        "conversations", sa.Column("labels", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False)
    )
    op.add_column("conversations", sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("conversations", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("conversations", sa.Column("unread_count", sa.Integer(), server_default="0", nullable=False))
    op.add_column("conversations", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        "conversations_team_id_fkey", "conversations", "teams", ["team_id"], ["id"], ondelete="SET NULL"
    )
    op.add_column("users", sa.Column("presence_seen_at", sa.DateTime(timezone=True), nullable=True))
    # Outside the migration's transaction: CONCURRENTLY cannot run inside one.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_conversations_assignee_status_activity",
            "conversations",
            ["assignee_id", "status", "last_activity_at"],
            unique=False,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_conversations_labels",
            "conversations",
            ["labels"],
            unique=False,
            postgresql_concurrently=True,
            postgresql_using="gin",
        )
        op.create_index(
            "ix_conversations_tenant_status_activity",
            "conversations",
            ["tenant_id", "status", "last_activity_at"],
            unique=False,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_messages_body_fts",
            "messages",
            [sa.literal_column("to_tsvector('simple', body)")],
            unique=False,
            postgresql_concurrently=True,
            postgresql_using="gin",
        )
        op.create_index(
            "ix_visitors_search_fts",
            "visitors",
            [
                sa.literal_column(
                    "to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(email, '') || ' ' "
                    "|| coalesce(external_id, ''))"
                )
            ],
            unique=False,
            postgresql_concurrently=True,
            postgresql_using="gin",
        )


def downgrade() -> None:
    op.drop_index("ix_visitors_search_fts", table_name="visitors", postgresql_using="gin")
    op.drop_column("users", "presence_seen_at")
    op.drop_index("ix_messages_body_fts", table_name="messages", postgresql_using="gin")
    op.drop_constraint("conversations_team_id_fkey", "conversations", type_="foreignkey")
    op.drop_index("ix_conversations_tenant_status_activity", table_name="conversations")
    op.drop_index("ix_conversations_labels", table_name="conversations", postgresql_using="gin")
    op.drop_index("ix_conversations_assignee_status_activity", table_name="conversations")
    op.drop_column("conversations", "waiting_since")
    op.drop_column("conversations", "unread_count")
    op.drop_column("conversations", "resolved_at")
    op.drop_column("conversations", "snoozed_until")
    op.drop_column("conversations", "labels")
    op.drop_column("conversations", "team_id")
    op.drop_index(op.f("ix_conversation_events_tenant_id"), table_name="conversation_events")
    op.drop_index("ix_conversation_events_conversation", table_name="conversation_events")
    op.drop_table("conversation_events")
    op.drop_index(op.f("ix_team_members_user_id"), table_name="team_members")
    op.drop_index(op.f("ix_team_members_tenant_id"), table_name="team_members")
    op.drop_table("team_members")
    op.drop_index(
        "uq_canned_tenant_shortcut", table_name="canned_responses", postgresql_where=sa.text("owner_id IS NULL")
    )
    op.drop_index(
        "uq_canned_owner_shortcut", table_name="canned_responses", postgresql_where=sa.text("owner_id IS NOT NULL")
    )
    op.drop_index(op.f("ix_canned_responses_tenant_id"), table_name="canned_responses")
    op.drop_table("canned_responses")
    op.drop_index(op.f("ix_teams_tenant_id"), table_name="teams")
    op.drop_table("teams")
