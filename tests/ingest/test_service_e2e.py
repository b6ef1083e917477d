"""`sfe ingest` end to end: the org simulator's CometD stream into the real broker.

Every lead change made through the simulator's REST API must reach Kafka exactly
once, through dropped connections, forgotten clients, a restart and an expired
replay id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce import Salesforce

from schema_registry.codec import Codec
from schema_registry.events import RecordChanged
from sfe import metrics
from sfe.settings import Settings
from simulator.app import RunningSimulator, start_in_thread
from simulator.config import SimConfig
from simulator.http.admin import apply_fault
from streams.ingest.appender import TransactionalAppender
from streams.ingest.changes import EchoPolicy
from streams.ingest.ingestor import Ingestor, IngestSettings
from streams.ingest.reader import SalesforceRecordReader
from streams.ingest.service import IngestService, StreamSettings
from streams.salesforce.auth import SalesforceAuthConfig
from streams.salesforce.rest import connect
from tests.kafka_helpers import consume_records

pytestmark = pytest.mark.integration

CHANNEL = "/data/LeadChangeEvent"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[RunningSimulator]:
    running = start_in_thread(SimConfig(state_dir=tmp_path, port=0, long_poll_seconds=2.0))
    yield running
    running.stop()


def auth_for(sim: RunningSimulator) -> SalesforceAuthConfig:
    """Password-flow login to the in-process simulator."""
    return sim.client_config()


def build_service(
    stack: Settings, sim: RunningSimulator, prefix: str, sf: Salesforce
) -> IngestService:
    appender = TransactionalAppender(
        stack.kafka_bootstrap,
        f"tx-{prefix}",
        prefix + "sfe.ingest.checkpoints",
        Codec(topic_prefix=prefix),
    )
    ingestor = Ingestor(
        appender,
        Codec(topic_prefix=prefix),
        EchoPolicy(client_id="sfe-pipeline"),
        SalesforceRecordReader(sf),
        IngestSettings(batch_max_records=200, topic_prefix=prefix),
    )
    from aiosfstream_ng import ReplayOption

    settings = StreamSettings(
        channels=(CHANNEL,), start_at=ReplayOption.ALL_EVENTS, flush_interval_s=0.1
    )
    return IngestService(ingestor, auth_for(sim), settings)


@contextlib.asynccontextmanager
async def running(service: IngestService):  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def lead_changes(
    stack: Settings, prefix: str, at_least: int, timeout: float = 60
) -> list[RecordChanged]:
    codec = Codec(topic_prefix=prefix)
    deadline = time.monotonic() + timeout
    events: list[Any] = []
    while time.monotonic() < deadline:
        records = consume_records(stack, prefix + "sf.cdc.Lead", 10**6, timeout=3)
        events = [
            codec.decode(prefix + "sf.cdc.Lead", value, headers) for _, value, headers in records
        ]
        if len(events) >= at_least:
            break
    return events


def create_leads(sf: Salesforce, count: int, tag: str) -> list[str]:
    ids = []
    for i in range(count):
        result = sf.Lead.create(
            {"LastName": f"{tag}-{i}", "Company": f"Acme {tag}", "Status": "Open - Not Contacted"}
        )
        ids.append(result["id"])
    return ids


async def test_every_change_once_through_drops_a_forgotten_client_and_a_restart(
    stack: Settings, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    service = build_service(stack, sim, prefix, sf)
    async with running(service):
        first = await asyncio.to_thread(create_leads, sf, 40, "a")
        sim.call(apply_fault, sim.state, {"action": "drop_connections"})
        second = await asyncio.to_thread(create_leads, sf, 40, "b")
        sim.call(apply_fault, sim.state, {"action": "forget_clients"})
        for lead_id in first[:30]:
            await asyncio.to_thread(sf.Lead.update, lead_id, {"Status": "Working - Contacted"})
        await asyncio.to_thread(lead_changes, stack, prefix, 110, 60)

    # A restart (new process state, same transactional id) resumes from the checkpoint.
    third = create_leads(sf, 20, "c")
    restarted = build_service(stack, sim, prefix, sf)
    async with running(restarted):
        events = await asyncio.to_thread(lead_changes, stack, prefix, 130, 60)

    creates = [e for e in events if e.header.change_type == "CREATE"]
    updates = [e for e in events if e.header.change_type == "UPDATE"]
    assert sorted(e.subject for e in creates) == sorted(first + second + third)
    assert sorted(e.subject for e in updates) == sorted(first[:30])
    assert all(e.fields.get("Status") == "Working - Contacted" for e in updates)
    assert len(events) == len({e.id for e in events}) == 130
    assert all(e.header.change_origin.endswith("client=sfe-pipeline") and e.is_echo for e in events)


async def test_gap_and_overflow_snapshots_equal_the_records_in_the_org(
    stack: Settings, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    service = build_service(stack, sim, prefix, sf)
    async with running(service):
        ids = await asyncio.to_thread(create_leads, sf, 3, "g")
        await asyncio.to_thread(lead_changes, stack, prefix, 3, 30)
        await asyncio.to_thread(sf.Lead.update, ids[0], {"Rating": "Hot"})
        gap = {
            "action": "gap",
            "entity": "Lead",
            "change_type": "GAP_UPDATE",
            "record_ids": [ids[0]],
        }
        sim.call(apply_fault, sim.state, gap)
        for lead_id in ids[1:]:
            await asyncio.to_thread(sf.Lead.update, lead_id, {"Status": "Working - Contacted"})
        overflow = {
            "action": "gap",
            "entity": "Lead",
            "change_type": "GAP_OVERFLOW",
            "record_ids": ["000000000000000AAA"],
        }
        sim.call(apply_fault, sim.state, overflow)
        events = await asyncio.to_thread(lead_changes, stack, prefix, 10, 60)

    snapshots = [e for e in events if e.is_snapshot]
    gap_snapshot = next(e for e in snapshots if e.causation_id and e.subject == ids[0])
    org_record = sf.Lead.get(ids[0])
    assert gap_snapshot.fields["Rating"] == org_record["Rating"] == "Hot"
    assert gap_snapshot.fields["LastName"] == org_record["LastName"]
    overflow_event = next(e for e in events if e.header.change_type == "GAP_OVERFLOW")
    reconciled = {e.subject: e for e in snapshots if e.causation_id == overflow_event.id}
    assert set(ids[1:]) <= set(reconciled)
    assert all(reconciled[i].fields["Status"] == "Working - Contacted" for i in ids[1:])


@pytest.fixture
def short_retention_sim(tmp_path: Path) -> Iterator[RunningSimulator]:
    config = SimConfig(
        state_dir=tmp_path, port=0, long_poll_seconds=2.0, event_retention_seconds=3.0
    )
    running = start_in_thread(config)
    yield running
    running.stop()


async def test_expired_replay_id_recovers_and_the_missed_window_reaches_kafka(
    stack: Settings, short_retention_sim: RunningSimulator, prefix: str
) -> None:
    sim = short_retention_sim
    sf = connect(auth_for(sim))
    service = build_service(stack, sim, prefix, sf)
    async with running(service):
        before = await asyncio.to_thread(create_leads, sf, 3, "before")
        await asyncio.to_thread(lead_changes, stack, prefix, 3, 30)

    # While the ingestor is down, changes happen and the org's retention (3 s) passes.
    await asyncio.sleep(1.1)  # SystemModstamp has second precision in SOQL
    missed = create_leads(sf, 4, "missed")
    await asyncio.sleep(3.5)

    expired_before = metrics.INGEST_RECOVERIES.labels(kind="replay_expired")._value.get()
    restarted = build_service(stack, sim, prefix, sf)
    async with running(restarted):
        events = await asyncio.to_thread(lead_changes, stack, prefix, 7, 60)
        after = await asyncio.to_thread(create_leads, sf, 2, "after")
        events = await asyncio.to_thread(lead_changes, stack, prefix, 9, 60)

    recovered = {e.subject for e in events if e.is_snapshot}
    assert set(missed) <= recovered
    assert (
        metrics.INGEST_RECOVERIES.labels(kind="replay_expired")._value.get() == expired_before + 1
    )
    assert {e.subject for e in events if e.header.change_type == "CREATE"} == set(before + after)
