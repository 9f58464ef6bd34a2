"""Encryption at rest: room for encrypted values and their key ids.

A sealed value ("enc:v1:<kid>:<base64 of nonce, ciphertext and tag>", desk/crypto.py) is about 4/3 of its text's
UTF-8 bytes plus 50 characters, so the columns that held short text with a length limit become `text`:
visitors.name (varchar 200), visitors.email (varchar 320) and conversations.last_message_preview (varchar 200).
messages.body and conversation_events.body already are. The limits stay where they always were enforced, in the
widget API, the API and the store worker.

Expand-only: varchar to text is binary-compatible, so PostgreSQL rewrites no rows (the previous code reads and
writes these columns as before). It takes a brief ACCESS EXCLUSIVE lock on each table and rebuilds the indexes
on the columns (ix_visitors_search_fts), which takes as long as the visitors table takes to index.

Downgrading narrows them again, which fails while any value is longer than the old limit: decrypt first with
`deskbell rotate-keys` and no active key (docs/operations.md, "Encryption at rest").

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WIDENED = (("visitors", "name", 200), ("visitors", "email", 320), ("conversations", "last_message_preview", 200))


def upgrade() -> None:
    for table, column, length in WIDENED:
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length=length))


def downgrade() -> None:
    for table, column, length in WIDENED:
        op.alter_column(table, column, type_=sa.String(length=length), existing_type=sa.Text())
