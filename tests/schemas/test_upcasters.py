"""Events written with an older schema version decode to the current model."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given, settings

from schema_registry import catalog, upcasters
from schema_registry.codec import Codec
from schema_registry.events import CommandExecuted, CommandOutcome, SalesforceError
from schema_registry.wire import ConfluentFormat
from tests.schemas.strategies import records

FIXTURES = Path(__file__).parent / "fixtures"
SUBJECT = "command.results-value"


def written_with_v1() -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """Values and headers as a v1 producer wrote them (frozen bytes, kept in the repo)."""
    rows = []
    for line in (FIXTURES / "command.results-v1.jsonl").read_text().splitlines():
        row = json.loads(line)
        headers = [(key, value.encode()) for key, value in row["headers"].items()]
        rows.append((base64.b64decode(row["value_b64"]), headers))
    return rows


def test_v1_events_kept_in_the_repo_replay_as_the_current_model() -> None:
    decoded = [
        Codec().decode("command.results", value, headers) for value, headers in written_with_v1()
    ]

    assert all(isinstance(event, CommandExecuted) for event in decoded)
    applied, rejected, notification = decoded
    assert isinstance(applied, CommandExecuted)
    assert applied.outcome is CommandOutcome.APPLIED
    assert applied.errors == ()
    assert applied.salesforce_id == "00Q5g00000AbCdEAAA"
    assert applied.causation_id == "cmd-0001"
    assert isinstance(rejected, CommandExecuted)
    assert rejected.outcome is CommandOutcome.REJECTED
    assert rejected.errors == (
        SalesforceError(
            status_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
            message="Close date cannot be in the past",
        ),
    )
    assert isinstance(notification, CommandExecuted)
    assert notification.errors == (
        SalesforceError(status_code="UNKNOWN_ERROR", message="channel_not_found"),
    )


@settings(max_examples=100, deadline=None)
@given(record=records(SUBJECT, version=1))
def test_every_v1_record_upcasts_consistently(record: dict[str, object]) -> None:
    upcast = upcasters.upcast(SUBJECT, dict(record))
    assert upcast["schema_version"] == catalog.schema(SUBJECT).version
    if record["succeeded"]:
        assert (upcast["outcome"], upcast["errors"]) == ("APPLIED", [])
    else:
        assert upcast["outcome"] == "REJECTED"
        assert len(upcast["errors"]) == 1
    kept = {key: value for key, value in record.items() if key not in ("succeeded", "error")}
    assert {key: upcast[key] for key in kept if key != "schema_version"} == {
        key: value for key, value in kept.items() if key != "schema_version"
    }


def test_v1_written_through_a_registry_decodes_to_the_current_model() -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://upcast"})
    old_producer = AvroSerializer(registry, catalog.schema(SUBJECT, 1).text)
    record = dict(_fixture_record(rejected=True))
    value = old_producer(record, SerializationContext("command.results", MessageField.VALUE))
    assert value is not None

    event = Codec(ConfluentFormat(registry)).decode("command.results", value)
    assert isinstance(event, CommandExecuted)
    assert event.outcome is CommandOutcome.REJECTED
    assert event.errors[0].status_code == "INVALID_FIELD"


def _fixture_record(rejected: bool) -> dict[str, object]:
    from datetime import UTC, datetime

    return {
        "id": "r-1",
        "type": "CommandExecuted",
        "source": "projections.salesforce",
        "subject": "00Q000000000001AAA",
        "time": datetime(2026, 1, 5, tzinfo=UTC),
        "causation_id": "cmd-1",
        "correlation_id": None,
        "schema_version": 1,
        "command_type": "SalesforceWriteRequested",
        "target": "Lead/00Q000000000001AAA",
        "succeeded": not rejected,
        "error": "INVALID_FIELD: No such column 'Foo__c'" if rejected else None,
        "salesforce_id": None,
    }


def test_schema_resolution_alone_would_lose_the_failure() -> None:
    """Why the upcaster exists: plain Avro resolution gives v1 failures the default outcome."""
    record = _fixture_record(rejected=True)
    assert upcasters.resolve(dict(record), SUBJECT, 1)["outcome"] == "APPLIED"
    assert upcasters.upcast(SUBJECT, dict(record))["outcome"] == "REJECTED"


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (
            "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ),
        ("ENTITY_IS_DELETED:entity is deleted", "ENTITY_IS_DELETED", "entity is deleted"),
        ("timed out: no answer", "UNKNOWN_ERROR", "timed out: no answer"),
        (None, "UNKNOWN_ERROR", ""),
    ],
)
def test_v1_error_text_becomes_a_salesforce_error(
    error: str | None, code: str, message: str
) -> None:
    record = {**_fixture_record(rejected=True), "error": error}
    (only,) = upcasters.upcast_command_results_v1_v2(record)["errors"]
    assert (only["status_code"], only["message"]) == (code, message)


def test_an_unknown_version_cannot_be_upcast() -> None:
    beyond = catalog.schema(SUBJECT).version + 1
    with pytest.raises(ValueError, match=f"no schema version {beyond}"):
        upcasters.upcast(SUBJECT, {**_fixture_record(rejected=False), "schema_version": beyond})


def test_an_upcaster_that_writes_an_invalid_record_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(record: dict[str, object]) -> dict[str, object]:
        return {**upcasters.upcast_command_results_v1_v2(record), "outcome": "MAYBE"}

    monkeypatch.setattr(upcasters, "UPCASTERS", {SUBJECT: {1: broken}})
    with pytest.raises(ValueError, match="invalid record"):
        upcasters.upcast(SUBJECT, _fixture_record(rejected=False))
