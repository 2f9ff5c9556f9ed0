"""initial schema: jobs, journaled items, monitor and API tokens, WebDAV locks and properties

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("src", sa.Text, nullable=False),
        sa.Column("dst", sa.Text),
        sa.Column("stage", sa.Text),
        sa.Column("dst_existed", sa.Boolean, nullable=False),
        sa.Column("overwrite", sa.Boolean, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("enumerated", sa.Boolean, nullable=False),
        sa.Column("old_dst_purged", sa.Boolean, nullable=False),
        sa.Column("stop_requested", sa.Boolean, nullable=False),
        sa.Column("items_total", sa.BigInteger, nullable=False),
        sa.Column("items_done", sa.BigInteger, nullable=False),
        sa.Column("bytes_total", sa.BigInteger, nullable=False),
        sa.Column("bytes_done", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("committed_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("stuck", sa.Boolean, nullable=False),
        sa.Column("node", sa.String(128)),
        sa.Column("error", sa.Text),
        sa.Column("error_type", sa.String(64)),
        sa.Column("resource_id", sa.Text),
    )
    op.create_index("ix_jobs_state_queue", "jobs", ["state", "queue", "created_at"])
    op.create_index("ix_jobs_phase", "jobs", ["phase"])
    op.create_table(
        "job_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("rel", sa.Text, nullable=False),
        sa.Column("is_dir", sa.Boolean, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.UniqueConstraint("job_id", "rel", name="uq_job_items_rel"),
    )
    op.create_index("ix_job_items_job", "job_items", ["job_id", "state", "id"])
    op.create_table(
        "monitor_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "dav_locks",
        sa.Column("token", sa.String(128), primary_key=True),
        sa.Column("root", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_dav_locks_root", "dav_locks", ["root"])
    op.create_table(
        "dav_props",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in ("dav_props", "dav_locks", "api_tokens", "monitor_tokens", "job_items", "jobs"):
        op.drop_table(name)
