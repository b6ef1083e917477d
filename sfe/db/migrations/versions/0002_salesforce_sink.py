"""The Salesforce sink's memory: field values it wrote, commands it handled, its outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "salesforce_field_values",
        sa.Column("sink", sa.String(100), nullable=False),
        sa.Column("sobject", sa.String(80), nullable=False),
        sa.Column("record_id", sa.String(18), nullable=False),
        sa.Column("field", sa.String(255), nullable=False),
        sa.Column("value", JSONB(none_as_null=False)),
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column(
            "written_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint(
            "sink", "sobject", "record_id", "field", name="salesforce_field_values_pkey"
        ),
    )
    op.create_table(
        "salesforce_commands",
        sa.Column("sink", sa.String(100), nullable=False),
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("salesforce_id", sa.String(18)),
        sa.Column("errors", JSONB, nullable=False),
        sa.Column(
            "handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("sink", "command_id", name="salesforce_commands_pkey"),
    )
    op.create_table(
        "salesforce_outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("sink", sa.String(100), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("key", sa.LargeBinary),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False),
    )
    op.create_index("ix_salesforce_outbox_sink", "salesforce_outbox", ["sink"])


def downgrade() -> None:
    op.drop_index("ix_salesforce_outbox_sink", table_name="salesforce_outbox")
    op.drop_table("salesforce_outbox")
    op.drop_table("salesforce_commands")
    op.drop_table("salesforce_field_values")
