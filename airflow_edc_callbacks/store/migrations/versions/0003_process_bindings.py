"""Process bindings (which task instance started a transfer process or contract negotiation), a hash of
every stored event body (a later delivery with the same envelope id and another body is a conflict), and
the seq an event trigger started from (its look-back after a restart never reaches before it).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edc_process_binding",
        sa.Column("process_id", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=False),
        sa.Column("bound_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("process_id", name="pk_edc_process_binding"),
    )
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("edc_callback_event")}
    if "body_sha256" not in columns:  # a baseline made by create_all of a newer package has it already
        op.add_column("edc_callback_event", sa.Column("body_sha256", sa.String(64)))
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("edc_trigger_cursor")}
    if "start_seq" not in columns:
        op.add_column("edc_trigger_cursor", sa.Column("start_seq", sa.BigInteger()))


def downgrade() -> None:
    op.drop_column("edc_trigger_cursor", "start_seq")
    with op.batch_alter_table("edc_callback_event") as batch:
        batch.drop_column("body_sha256")
    op.drop_table("edc_process_binding")
