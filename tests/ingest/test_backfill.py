"""`sfe backfill` against the org simulator's Bulk API 2.0 and the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schema_registry.codec import Codec
from sfe.settings import Settings
from simulator.app import RunningSimulator, start_in_thread
from simulator.config import SimConfig
from streams.ingest.appender import TransactionalAppender
from streams.ingest.backfill import run_backfill, typed_value
from streams.ingest.reader import UnsafeQueryValue
from streams.salesforce.rest import connect
from tests.ingest.test_service_e2e import auth_for, create_leads
from tests.kafka_helpers import consume_records

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[RunningSimulator]:
    running = start_in_thread(SimConfig(state_dir=tmp_path, port=0, long_poll_seconds=2.0))
    yield running
    running.stop()


def test_typed_values_follow_describe_types() -> None:
    assert typed_value("", "string") is None
    assert typed_value("true", "boolean") is True
    assert typed_value("42.0", "int") == 42
    assert typed_value("1250.5", "currency") == 1250.5
    assert typed_value("Acme", "string") == "Acme"


def test_backfill_publishes_one_snapshot_per_record_equal_to_the_org(
    stack: Settings, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    ids = create_leads(sf, 25, "bf")
    appender = TransactionalAppender(
        stack.kafka_bootstrap,
        f"tx-{prefix}",
        prefix + "sfe.ingest.checkpoints",
        Codec(topic_prefix=prefix),
    )
    written = run_backfill(
        sf, appender, Codec(topic_prefix=prefix), "Lead", topic_prefix=prefix, batch_size=10
    )
    assert written == 25

    codec = Codec(topic_prefix=prefix)
    events = [
        codec.decode(prefix + "sf.cdc.Lead", value, headers)
        for _, value, headers in consume_records(stack, prefix + "sf.cdc.Lead", 25)
    ]
    assert sorted(e.subject for e in events) == sorted(ids)
    assert all(e.is_snapshot for e in events)
    org = {
        r["Id"]: r
        for r in sf.query_all("SELECT Id, LastName, Company, Status FROM Lead")["records"]
    }
    for event in events:
        for name in ("LastName", "Company", "Status"):
            assert event.fields[name] == org[event.subject][name]
    # A window in the future matches nothing.
    later = datetime.now(UTC) + timedelta(hours=1)
    assert run_backfill(sf, appender, codec, "Lead", since=later, topic_prefix=prefix) == 0


def test_hostile_object_names_never_reach_soql(sim: RunningSimulator, stack: Settings) -> None:
    sf = connect(auth_for(sim))
    appender = TransactionalAppender(
        stack.kafka_bootstrap, f"tx-hostile-{uuid.uuid4().hex}", "unused"
    )
    with pytest.raises(UnsafeQueryValue):
        run_backfill(sf, appender, Codec(), "Lead WHERE Id != null --")
