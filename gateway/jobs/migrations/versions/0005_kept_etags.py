"""file ids: the ETag a file had before a move made by copy, kept while the copy is unchanged

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_ids") as batch:
        batch.add_column(sa.Column("etag", sa.Text))
        batch.add_column(sa.Column("etag_stamp", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("file_ids") as batch:
        batch.drop_column("etag_stamp")
        batch.drop_column("etag")
