"""paths in byte order: on PostgreSQL, indexes on ``path COLLATE "C"`` of
file_ids and dav_props and on ``root COLLATE "C"`` of dav_locks, so the
subtree and member conditions (gateway.jobs.schema.path_subtree, a range in
byte order) are index scans, not a scan of the whole table at every delete,
move or copy. SQLite compares text by its bytes already: its plain indexes
on the paths serve the range, nothing to do.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_INDEXES = (("ix_file_ids_path_bytes", "file_ids", "path"),
            ("ix_dav_props_path_bytes", "dav_props", "path"),
            ("ix_dav_locks_root_bytes", "dav_locks", "root"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, column in _INDEXES:
        op.create_index(name, table, [sa.text(f'{column} COLLATE "C"')])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, _ in _INDEXES:
        op.drop_index(name, table_name=table)
