"""Tables of the PostgreSQL read models (SQLAlchemy Core), mirrored by the Alembic migrations.

The three tables of SPEC.md keep exactly their columns, plus an ``event_id`` with a
unique constraint: the id of the event a row was projected from, so a redelivered or
replayed event can never add a second row. ``projection_offsets`` holds each
projection's consumed position per topic partition, written in the same transaction
as the rows (exactly-once effect over at-least-once delivery).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

EVENT_ID_LENGTH = 64

sync_log = Table(
    "sync_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sf_object", String(50)),
    Column("sf_record_id", String(18)),
    Column("operation", String(20)),
    Column("status", String(20)),
    Column("error_message", Text),
    Column("created_at", DateTime, server_default=func.now()),
    Column("event_id", String(EVENT_ID_LENGTH), nullable=False, unique=True),
)

ml_predictions = Table(
    "ml_predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(18)),
    Column("prediction_type", String(50)),
    Column("probability", Numeric(5, 2)),
    Column("factors", JSONB),
    Column("model_version", String(20)),
    Column("created_at", DateTime, server_default=func.now()),
    Column("event_id", String(EVENT_ID_LENGTH), nullable=False, unique=True),
)

workflow_executions = Table(
    "workflow_executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_name", String(100)),
    Column("record_id", String(18)),
    Column("status", String(20)),
    Column("steps_completed", Integer),
    Column("total_steps", Integer),
    Column("started_at", DateTime),
    Column("completed_at", DateTime),
    Column("event_id", String(EVENT_ID_LENGTH), nullable=False, unique=True),
)

projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("projection", String(100), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("projection", "topic", "partition", name="projection_offsets_pkey"),
)

# The Salesforce sink's memory (migration 0002): field values it wrote, commands it
# handled, and the outbox of result events it has still to publish.
salesforce_field_values = Table(
    "salesforce_field_values",
    metadata,
    Column("sink", String(100), nullable=False),
    Column("sobject", String(80), nullable=False),
    Column("record_id", String(18), nullable=False),
    Column("field", String(255), nullable=False),
    Column("value", JSONB(none_as_null=False)),
    Column("command_id", String(EVENT_ID_LENGTH), nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint(
        "sink", "sobject", "record_id", "field", name="salesforce_field_values_pkey"
    ),
)

salesforce_commands = Table(
    "salesforce_commands",
    metadata,
    Column("sink", String(100), nullable=False),
    Column("command_id", String(EVENT_ID_LENGTH), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("salesforce_id", String(18)),
    Column("errors", JSONB, nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("sink", "command_id", name="salesforce_commands_pkey"),
)

salesforce_outbox = Table(
    "salesforce_outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("sink", String(100), nullable=False, index=True),
    Column("topic", String(249), nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False),
)
