"""file ids: a stable id, a change version and a verified checksum per file or folder (sync clients)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_ids",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.Text),
        sa.Column("checksum_size", sa.BigInteger),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("file_ids")
