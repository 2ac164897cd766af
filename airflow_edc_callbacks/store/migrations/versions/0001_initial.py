"""The event table, the event triggers' cursors and what they fired.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite: INTEGER PRIMARY KEY AUTOINCREMENT (purged seq values are never reused); elsewhere BIGINT.
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "edc_callback_event",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("envelope_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("process_id", sa.String(200)),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("event_at", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("routes", sa.String(1000), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_edc_callback_event"),
        sa.UniqueConstraint("envelope_id", name="uq_edc_callback_event_envelope_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_edc_callback_event_process_id", "edc_callback_event", ["process_id"])
    op.create_index("ix_edc_callback_event_correlation_id", "edc_callback_event", ["correlation_id"])
    op.create_index("ix_edc_callback_event_received_at", "edc_callback_event", ["received_at"])
    op.create_table(
        "edc_trigger_cursor",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_edc_trigger_cursor"),
    )
    op.create_table(
        "edc_trigger_fired",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("process_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "process_id", "event_type", name="pk_edc_trigger_fired"),
    )


def downgrade() -> None:
    op.drop_table("edc_trigger_fired")
    op.drop_table("edc_trigger_cursor")
    op.drop_index("ix_edc_callback_event_received_at", "edc_callback_event")
    op.drop_index("ix_edc_callback_event_correlation_id", "edc_callback_event")
    op.drop_index("ix_edc_callback_event_process_id", "edc_callback_event")
    op.drop_table("edc_callback_event")
