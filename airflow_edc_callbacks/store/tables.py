"""SQLAlchemy tables of the callback event store (in the package's own database, not Airflow's).

The schema is created and upgraded by the Alembic migrations in ``migrations/`` (see :mod:`.schema`);
a change here needs a new revision there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base on the package's own :class:`~sqlalchemy.MetaData`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CallbackEventRow(Base):
    """One callback event, stored once per envelope id.

    ``seq`` orders events by the time they were stored (a cursor for listeners); ``event_at`` is the
    envelope's ``at`` (epoch milliseconds, connector clock) and ``received_at`` the receiver's clock
    (epoch milliseconds). ``routes`` lists every route the event arrived by (``dynamic``,
    ``static:<name>``), space separated. ``body_sha256`` is the hex SHA-256 of the body's canonical JSON
    (sorted keys, no white space); ``NULL`` for events stored before revision 0003.
    """

    __tablename__ = "edc_callback_event"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    envelope_id: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    event_type: Mapped[str] = mapped_column(String(200), nullable=False)
    process_id: Mapped[str | None] = mapped_column(String(200), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(128), index=True)
    event_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    received_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    routes: Mapped[str] = mapped_column(String(1000), nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    body_sha256: Mapped[str | None] = mapped_column(String(64))

    # AUTOINCREMENT: SQLite never reuses a purged seq, so a listener's cursor stays valid
    __table_args__ = (Index("ix_edc_callback_event_received_at", "received_at"), {"sqlite_autoincrement": True})


class TriggerCursorRow(Base):
    """How far an event trigger (e.g. an ``AssetWatcher``) has read the events: its last ``seq``."""

    __tablename__ = "edc_trigger_cursor"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    start_seq: Mapped[int | None] = mapped_column(BigInteger)  # the cursor when the trigger first started


class TriggerFiredRow(Base):
    """An event trigger fired once for this process and event type (EDC may publish an event twice)."""

    __tablename__ = "edc_trigger_fired"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)


class TriggerHoldRow(Base):
    """A waiting trigger's claim on its process's events: retention keeps them while it is renewed.

    ``renewed_at`` is epoch milliseconds; a hold not renewed within the retention period is stale (its
    trigger is gone) and protects nothing.
    """

    __tablename__ = "edc_trigger_hold"

    holder: Mapped[str] = mapped_column(String(64), primary_key=True)
    process_id: Mapped[str | None] = mapped_column(String(200), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(128), index=True)
    renewed_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ProcessBindingRow(Base):
    """The task instance (its correlation id) that started a transfer process or contract negotiation.

    Written by the operator once the connector's answer names the process, and by the waiting trigger;
    the binding never changes afterwards. A dynamic callback event counts for a process only when it
    arrived with the token of the correlation id the process is bound to. ``bound_at`` is epoch
    milliseconds; ``taken_at`` (epoch milliseconds, ``NULL`` until then) is when a try of the task took
    the process's result, after which no retry re-attaches to it.
    """

    __tablename__ = "edc_process_binding"

    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    correlation_id: Mapped[str] = mapped_column(String(128), nullable=False)
    bound_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    taken_at: Mapped[int | None] = mapped_column(BigInteger)


class EdrRefreshLockRow(Base):
    """Who refreshes a transfer's EDR right now: one refresh at a time per transfer process, across tasks,
    workers and hosts (see :meth:`~airflow_edc_callbacks.store.EventStore.try_lock_edr_refresh`).

    ``expires_at`` is epoch milliseconds: a lock past it is free again, so a holder that crashed blocks
    nobody for longer than its lease.
    """

    __tablename__ = "edc_edr_refresh_lock"

    process_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
