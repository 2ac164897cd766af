"""Holds: the processes waiting triggers need, kept by retention while the holds are renewed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edc_trigger_hold",
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("process_id", sa.String(200)),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("renewed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("holder", name="pk_edc_trigger_hold"),
    )
    op.create_index("ix_edc_trigger_hold_process_id", "edc_trigger_hold", ["process_id"])
    op.create_index("ix_edc_trigger_hold_correlation_id", "edc_trigger_hold", ["correlation_id"])


def downgrade() -> None:
    op.drop_index("ix_edc_trigger_hold_correlation_id", "edc_trigger_hold")
    op.drop_index("ix_edc_trigger_hold_process_id", "edc_trigger_hold")
    op.drop_table("edc_trigger_hold")
