"""Alembic environment: labkit runs it in-process from Database.upgrade().

``Database`` hands its own open connection in ``config.attributes["connection"]`` so the
SQLite pragmas and the transaction apply; with only ``sqlalchemy.url`` set (e.g. the
``alembic`` command with ``-x``-less config), a connection is opened here. Offline mode
prints the SQL for a DBA to review.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from labkit.adapters.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        conn.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
