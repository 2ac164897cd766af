"""Creating and upgrading the event store's tables: Alembic migrations shipped with the package.

Every process that opens a store runs :func:`upgrade` (a no-op when the schema is current), so a new
version of the package upgrades the schema on its first start; nobody runs DDL by hand. On PostgreSQL
the upgrade holds a transaction-level advisory lock, so several api-servers and triggerers starting at
once upgrade it once; on SQLite a process that loses the race to create the tables retries and finds
them current.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

VERSION_TABLE = "edc_callbacks_alembic_version"
"""Alembic's version table for this store (not ``alembic_version``: the store may share Airflow's database)."""

BASELINE = "0001"
"""The schema of stores created before migrations existed (``create_all`` of the same tables)."""

_ADVISORY_LOCK = 0x0EDC_CA11
_MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision this package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # the package ships its migrations: only a broken installation has none
        raise RuntimeError(f"No Alembic migrations in {_MIGRATIONS}")
    return head


def known_revisions() -> list[str]:
    """Every revision this package ships, newest first."""
    return [script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()]


def current_revision(engine: Engine) -> str | None:
    """The revision of the store's schema, ``None`` for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, attempts: int = 3) -> None:
    """Bring the store's schema to :func:`head_revision`.

    :raises sqlalchemy.exc.SQLAlchemyError: the database refused (after ``attempts`` for races on SQLite).
    """
    config = _config()
    head = head_revision()
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
                context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
                current = context.get_current_revision()
                if current == head:
                    return
                config.attributes["connection"] = connection
                if current is None and inspect(connection).has_table("edc_callback_event"):
                    command.stamp(config, BASELINE)
                command.upgrade(config, "head")
            return
        except (OperationalError, ProgrammingError):
            if attempt == attempts:
                raise
