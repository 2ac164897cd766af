"""EDR refresh locks: one refresh of a transfer's EDR at a time, across tasks, workers and hosts.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edc_edr_refresh_lock",
        sa.Column("process_id", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("process_id", name="pk_edc_edr_refresh_lock"),
    )


def downgrade() -> None:
    op.drop_table("edc_edr_refresh_lock")
