"""job items: the bytes of each item already counted in its job's
bytes_done, so an item copied again (by a later attempt, or by another
node's worker after a takeover) is never counted twice

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_items") as batch:
        batch.add_column(sa.Column("counted", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("job_items") as batch:
        batch.drop_column("counted")
