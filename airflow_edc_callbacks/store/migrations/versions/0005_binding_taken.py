"""When a task took a process's result: a retry re-attaches to an earlier try's completed transfer only
while no try has taken its result.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("edc_process_binding")}
    if "taken_at" not in columns:  # a baseline made by create_all of a newer package has it already
        op.add_column("edc_process_binding", sa.Column("taken_at", sa.BigInteger()))
        # a process bound before this version counts as taken: its task never marked it, and a clear of
        # that (successful) task must start a new transfer, as it did before
        op.execute("UPDATE edc_process_binding SET taken_at = bound_at WHERE taken_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("edc_process_binding") as batch:
        batch.drop_column("taken_at")
