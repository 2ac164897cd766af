"""Alembic environment of the callback event store: runs on the connection :func:`..schema.upgrade` passes."""

from __future__ import annotations

from alembic import context

from airflow_edc_callbacks.store.schema import VERSION_TABLE
from airflow_edc_callbacks.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
