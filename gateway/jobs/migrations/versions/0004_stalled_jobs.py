"""stalled jobs (no progress), an admin's retry, leftovers of an ended job; one monitor token per job

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress_at", sa.Float))
        batch.add_column(sa.Column("stalled", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("retries_from", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("leftovers", sa.Text))
    op.create_table(
        "store_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_secrets")
    with op.batch_alter_table("jobs") as batch:
        for column in ("leftovers", "retries_from", "stalled", "progress_at"):
            batch.drop_column(column)
