"""Migrations against the real PostgreSQL of the local stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from sfe import db
from sfe.settings import Settings
from sfe.stack import PostgresCluster

pytestmark = pytest.mark.integration

SPEC_COLUMNS = {
    "sync_log": {
        "id",
        "sf_object",
        "sf_record_id",
        "operation",
        "status",
        "error_message",
        "created_at",
    },
    "ml_predictions": {
        "id",
        "account_id",
        "prediction_type",
        "probability",
        "factors",
        "model_version",
        "created_at",
    },
    "workflow_executions": {
        "id",
        "workflow_name",
        "record_id",
        "status",
        "steps_completed",
        "total_steps",
        "started_at",
        "completed_at",
    },
}


def head_revision(settings: Settings) -> str:
    head = ScriptDirectory.from_config(db.alembic_config(settings)).get_current_head()
    assert head is not None
    return head


@pytest.fixture
def scratch_database(stack: Settings) -> Iterator[Settings]:
    """Settings pointing at a fresh, empty database owned by the project role."""
    cluster = PostgresCluster(stack)
    name = f"sfe_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(cluster.superuser_conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(cluster.role)
            )
        )
    url = stack.sqlalchemy_url().rsplit("/", 1)[0] + "/" + name
    try:
        yield stack.model_copy(update={"database_url": type(stack.database_url)(url)})
    finally:
        with psycopg.connect(cluster.superuser_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrations_create_the_spec_tables_plus_idempotency_keys(stack: Settings) -> None:
    engine = create_engine(stack.sqlalchemy_url())
    try:
        inspector = inspect(engine)
        for table, columns in SPEC_COLUMNS.items():
            actual = {column["name"] for column in inspector.get_columns(table)}
            assert actual == columns | {"event_id"}
            uniques = [set(u["column_names"]) for u in inspector.get_unique_constraints(table)]
            assert {"event_id"} in uniques
        offsets = inspect(engine).get_pk_constraint("projection_offsets")
        assert offsets["constrained_columns"] == ["projection", "topic", "partition"]
    finally:
        engine.dispose()


def test_event_id_rejects_a_second_row_for_the_same_event(stack: Settings) -> None:
    engine = create_engine(stack.sqlalchemy_url())
    event_id = f"evt-{uuid.uuid4().hex}"
    insert = text(
        "INSERT INTO sync_log (sf_object, sf_record_id, operation, status, event_id) "
        "VALUES ('Lead', '00Q000000000001AAA', 'update', 'applied', :event_id)"
    )
    try:
        with engine.begin() as connection:
            connection.execute(insert, {"event_id": event_id})
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert, {"event_id": event_id})
        with engine.begin() as connection:
            count = connection.execute(
                text("SELECT count(*) FROM sync_log WHERE event_id = :e"), {"e": event_id}
            ).scalar_one()
            connection.execute(text("DELETE FROM sync_log WHERE event_id = :e"), {"e": event_id})
        assert count == 1
    finally:
        engine.dispose()


def test_upgrade_and_downgrade_round_trip_on_an_empty_database(scratch_database: Settings) -> None:
    assert db.current_revision(scratch_database) is None
    db.upgrade(scratch_database)
    assert db.current_revision(scratch_database) == head_revision(scratch_database)
    db.upgrade(scratch_database)  # idempotent
    db.downgrade(scratch_database, "base")
    engine = create_engine(scratch_database.sqlalchemy_url())
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    db.upgrade(scratch_database)
    assert db.current_revision(scratch_database) == head_revision(scratch_database)
