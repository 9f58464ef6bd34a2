"""Alembic environment: the URL comes from DATABASE_URL (or the caller's config), the model from desk.models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from desk import settings
from desk.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or settings.load().database_url
if not url:
    raise RuntimeError("DATABASE_URL is not set")

connectable = create_engine(settings.sqlalchemy_url(url), poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        # Two `release` processes started at once must not both migrate.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7419201)")
        # A data migration sees every tenant's rows, also when the login role owns the tables and FORCE ROW LEVEL
        # SECURITY holds it to the policies (migration 0008; docs/operations.md, "Row-level security"). For the
        # connection's life, not the transaction's: a migration's autocommit_block() starts new ones.
        connection.exec_driver_sql("SELECT set_config('deskbell.system', 'on', false)")
        context.run_migrations()
