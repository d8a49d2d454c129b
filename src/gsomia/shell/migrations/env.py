"""Alembic environment: migrations run on the connection ``store.migrate`` passes in."""

from __future__ import annotations

from alembic import context

from gsomia.shell.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("gsomia migrations run through gsomia.shell.store.migrate(engine)")

context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
