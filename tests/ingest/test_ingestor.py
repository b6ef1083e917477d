"""The ingestor against the real broker: per-record events, dead letters, redeliveries, restart."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pytest

from schema_registry.codec import Codec
from schema_registry.events import EventDeadLettered, RecordChanged
from sfe.settings import Settings
from streams.ingest.appender import TransactionalAppender
from streams.ingest.changes import EchoPolicy
from streams.ingest.ingestor import Ingestor, IngestSettings
from tests.kafka_helpers import consume_all, consume_records

pytestmark = pytest.mark.integration

ECHO = EchoPolicy(client_id="sfe-pipeline")


def change(
    replay_id: int, record_ids: list[str], change_type: str = "UPDATE", **values: Any
) -> dict[str, Any]:
    return {
        "channel": "/data/LeadChangeEvent",
        "data": {
            "schema": "x",
            "event": {"replayId": replay_id},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Lead",
                    "recordIds": record_ids,
                    "changeType": change_type,
                    "changeOrigin": "com/salesforce/api/rest/62.0",
                    "transactionKey": f"tx-{replay_id}",
                    "sequenceNumber": 1,
                    "commitTimestamp": 1764100000000 + replay_id,
                    "commitNumber": replay_id,
                    "commitUser": "005000000000009AAA",
                    "changedFields": sorted(values),
                },
                **values,
            },
        },
    }


class RecordsById:
    """Answers re-reads from a fixed set of records (the org's state at recovery time)."""

    def __init__(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        self.records = records

    async def read_records(
        self, entity: str, record_ids: Sequence[str]
    ) -> dict[str, Mapping[str, Any] | None]:
        return {record_id: self.records.get(record_id) for record_id in record_ids}

    async def read_changed_since(self, entity: str, since: datetime) -> list[Mapping[str, Any]]:
        return list(self.records.values())


def ingestor(stack: Settings, prefix: str, reader: RecordsById | None = None) -> Ingestor:
    appender = TransactionalAppender(
        stack.kafka_bootstrap,
        f"tx-{prefix}",
        prefix + "sfe.ingest.checkpoints",
        Codec(topic_prefix=prefix),
    )
    return Ingestor(
        appender,
        Codec(topic_prefix=prefix),
        ECHO,
        reader,
        IngestSettings(batch_max_records=64, topic_prefix=prefix),
    )


def read_events(stack: Settings, prefix: str, topic: str, expected: int) -> list[Any]:
    codec = Codec(topic_prefix=prefix)
    records = consume_records(stack, prefix + topic, expected, timeout=15)
    return [codec.decode(prefix + topic, value, headers) for _, value, headers in records]


async def test_every_change_once_with_dead_letters_and_redeliveries(
    stack: Settings, prefix: str
) -> None:
    first = ingestor(stack, prefix)
    assert first.start() == {}
    messages = [change(i, [f"00Q{i:015d}"], Status=f"s{i}") for i in range(1, 101)]
    messages.insert(50, change(1000, ["00Q000000000000001", "00Q000000000000002"], Rating="Hot"))
    messages.insert(
        70,
        {"channel": "/data/LeadChangeEvent", "data": {"event": {"replayId": 1001}, "payload": {}}},
    )
    messages.append(messages[10])  # a redelivery
    for message in messages:
        await first.handle(message)
    await first.flush()

    changes = read_events(stack, prefix, "sf.cdc.Lead", 102)
    assert len(changes) == 102
    assert all(isinstance(event, RecordChanged) for event in changes)
    assert len({event.id for event in changes}) == 102
    multi = [event for event in changes if event.header.transaction_key == "tx-1000"]
    assert sorted(event.subject for event in multi) == ["00Q000000000000001", "00Q000000000000002"]
    (dead,) = read_events(stack, prefix, "dlq.ingest", 1)
    assert isinstance(dead, EventDeadLettered)
    assert "ChangeEventHeader" in dead.reason
    assert json.loads(dead.original_value or b"{}")["data"]["event"]["replayId"] == 1001
    assert (
        first.checkpoints["/data/LeadChangeEvent"].replay_id == 11
    )  # the redelivered one came last

    # A restart resumes from the committed replay id and still recognises redeliveries.
    second = ingestor(stack, prefix)
    assert second.start()["/data/LeadChangeEvent"].replay_id == 11
    await second.handle(messages[-2])  # the last new message, delivered again
    await second.flush()
    assert len(consume_all(stack, prefix + "sf.cdc.Lead", 103, "read_committed", timeout=5)) == 102


async def test_gap_and_overflow_publish_snapshots(stack: Settings, prefix: str) -> None:
    org = {
        "00Q000000000000007": {
            "attributes": {"type": "Lead"},
            "Id": "00Q000000000000007",
            "Name": {"FirstName": "Ada", "LastName": "Byron"},
            "Status": "Open",
        },
        "00Q000000000000008": {"Id": "00Q000000000000008", "IsDeleted": True, "Status": "Closed"},
    }
    gap_ingestor = ingestor(stack, prefix, RecordsById(org))
    gap_ingestor.start()
    await gap_ingestor.handle(change(5, ["00Q000000000000007"], change_type="GAP_UPDATE"))
    await gap_ingestor.handle(change(6, ["000000000000000AAA"], change_type="GAP_OVERFLOW"))
    await gap_ingestor.flush()

    events = read_events(stack, prefix, "sf.cdc.Lead", 5)
    snapshots = [event for event in events if event.is_snapshot]
    assert len(events) == 5 and len(snapshots) == 3
    gap = next(event for event in events if event.header.change_type == "GAP_UPDATE")
    (reread,) = [event for event in snapshots if event.causation_id == gap.id]
    assert reread.subject == "00Q000000000000007"
    assert reread.fields["Name.LastName"] == "Byron" and "attributes" not in reread.fields
    overflow = next(event for event in events if event.header.change_type == "GAP_OVERFLOW")
    reconciled = {event.subject: event for event in snapshots if event.causation_id == overflow.id}
    assert set(reconciled) == {"00Q000000000000007", "00Q000000000000008"}
    assert reconciled["00Q000000000000008"].header.change_type == "DELETE"
