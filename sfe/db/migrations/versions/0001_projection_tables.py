"""Projection tables of SPEC.md (sync_log, ml_predictions, workflow_executions) and projection_offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sf_object", sa.String(50)),
        sa.Column("sf_record_id", sa.String(18)),
        sa.Column("operation", sa.String(20)),
        sa.Column("status", sa.String(20)),
        sa.Column("error_message", sa.Text),
        sa.Column("created_at", sa.DateTime, server_default=sa.func.now()),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "ml_predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(18)),
        sa.Column("prediction_type", sa.String(50)),
        sa.Column("probability", sa.Numeric(5, 2)),
        sa.Column("factors", JSONB),
        sa.Column("model_version", sa.String(20)),
        sa.Column("created_at", sa.DateTime, server_default=sa.func.now()),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "workflow_executions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_name", sa.String(100)),
        sa.Column("record_id", sa.String(18)),
        sa.Column("status", sa.String(20)),
        sa.Column("steps_completed", sa.Integer),
        sa.Column("total_steps", sa.Integer),
        sa.Column("started_at", sa.DateTime),
        sa.Column("completed_at", sa.DateTime),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "projection_offsets",
        sa.Column("projection", sa.String(100), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("projection", "topic", "partition", name="projection_offsets_pkey"),
    )


def downgrade() -> None:
    op.drop_table("projection_offsets")
    op.drop_table("workflow_executions")
    op.drop_table("ml_predictions")
    op.drop_table("sync_log")
