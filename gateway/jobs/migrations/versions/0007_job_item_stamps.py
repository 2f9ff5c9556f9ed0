"""job items: what the storage reported of a moved file and of its copy, so
a job's move keeps the file's ETag for sync clients (gateway.fileids)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_items") as batch:
        batch.add_column(sa.Column("src_stamp", sa.Text))
        batch.add_column(sa.Column("dst_stamp", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("job_items") as batch:
        batch.drop_column("dst_stamp")
        batch.drop_column("src_stamp")
