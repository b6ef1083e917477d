"""Bad input never escapes as anything but UndecodableEvent, and the reason says what is wrong."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schema_registry import catalog
from schema_registry.codec import Codec, EncodedValue
from schema_registry.errors import EventNotEncodable, UndecodableEvent
from schema_registry.events import UsageSignalReported, WorkflowAdvanced
from schema_registry.wire import ConfluentFormat, ReadHeaders

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SIGNAL = UsageSignalReported(
    id="e-1",
    source="ecosystem.autohelix",
    subject="001000000000001AAA",
    time=NOW,
    system="autohelix",
    metric="daily_active_users",
    value=42.0,
    observed_at=NOW,
)


@pytest.fixture
def encoded() -> EncodedValue:
    return Codec().encode("usage.signals", SIGNAL)


def reason(topic: str, value: bytes | None, headers: ReadHeaders | None) -> str:
    with pytest.raises(UndecodableEvent) as caught:
        Codec().decode(topic, value, headers)
    assert caught.value.topic == topic
    return caught.value.reason


def test_a_tombstone_is_undecodable() -> None:
    assert "no value" in reason("usage.signals", None, [])


def test_a_topic_outside_the_catalogue_is_undecodable(encoded: EncodedValue) -> None:
    assert "no schema is kept" in reason("unknown.topic", encoded.value, encoded.headers)


def test_missing_headers_are_named(encoded: EncodedValue) -> None:
    assert "sfe-schema-subject" in reason("usage.signals", encoded.value, [])


def test_headers_without_values_count_as_missing(encoded: EncodedValue) -> None:
    headers = [(key, None) for key, _ in encoded.headers]
    assert "sfe-schema-subject" in reason("usage.signals", encoded.value, headers)


def test_a_confluent_framed_value_without_a_registry_gets_a_hint() -> None:
    framed = b"\x00" + struct.pack(">I", 7) + b"\x02ab"
    assert "schema registry URL" in reason("usage.signals", framed, None)


def test_a_record_of_another_subject_is_rejected(encoded: EncodedValue) -> None:
    assert "usage.signals-value" in reason("predictions", encoded.value, encoded.headers)


def test_an_unknown_version_is_rejected(encoded: EncodedValue) -> None:
    headers = [(k, b"9" if k == "sfe-schema-version" else v) for k, v in encoded.headers]
    assert "no schema version 9" in reason("usage.signals", encoded.value, headers)


def test_trailing_bytes_are_rejected(encoded: EncodedValue) -> None:
    assert "bytes left" in reason("usage.signals", encoded.value + b"\x00", encoded.headers)


def test_a_truncated_value_is_rejected(encoded: EncodedValue) -> None:
    assert "not Avro of usage.signals-value" in reason(
        "usage.signals", encoded.value[:-3], encoded.headers
    )


def test_a_record_whose_type_field_lies_is_rejected() -> None:
    record = {**_signal_record(), "type": "SomethingElse"}
    buffer = io.BytesIO()
    schemaless_writer(buffer, catalog.schema("usage.signals-value").parsed, record)
    headers = Codec().encode("usage.signals", SIGNAL).headers
    assert "SomethingElse" in reason("usage.signals", buffer.getvalue(), headers)


def _signal_record() -> dict[str, object]:
    from schema_registry.records import to_record

    return to_record(SIGNAL)


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=64), version=st.sampled_from([b"1", b"2", b"x", b""]))
def test_random_bytes_raise_only_undecodable_event(value: bytes, version: bytes) -> None:
    headers = [("sfe-schema-subject", b"command.results-value"), ("sfe-schema-version", version)]
    try:
        Codec().decode("command.results", value, headers)
    except UndecodableEvent as exc:
        assert exc.reason
    # A decoded event from random bytes is possible (everything fit): that is fine.


REGISTRY_CODEC = Codec(ConfluentFormat(SchemaRegistryClient.new_client({"url": "mock://fuzz"})))


#: Magic byte and the id the registry gave usage.signals' schema: fuzzed payloads behind
#: it reach the Avro decoder instead of stopping at the framing check.
REGISTERED_FRAME = REGISTRY_CODEC.encode("usage.signals", SIGNAL).value[:5]


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.binary(max_size=40), st.binary(max_size=60).map(lambda tail: REGISTERED_FRAME + tail)
    )
)
def test_random_bytes_with_a_registry_raise_only_undecodable_event(value: bytes) -> None:
    try:
        REGISTRY_CODEC.decode("usage.signals", value)
    except UndecodableEvent as exc:
        assert exc.reason


def test_an_unknown_schema_id_is_undecodable() -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://unknown-id"})
    value = b"\x00" + struct.pack(">I", 4242) + b"\x02\x02a"
    with pytest.raises(
        UndecodableEvent, match="schema id 4242: SchemaRegistryError: Schema Not Found"
    ):
        Codec(ConfluentFormat(registry)).decode("usage.signals", value)


def test_an_event_on_the_wrong_topic_is_not_encodable() -> None:
    with pytest.raises(EventNotEncodable, match="holds UsageSignalReported"):
        Codec().encode(
            "usage.signals",
            WorkflowAdvanced(
                id="w",
                source="agents.onboarding",
                subject="wf-1",
                time=NOW,
                workflow="onboarding",
                from_state=None,
                to_state="provisioning",
                detail="",
            ),
        )


def test_a_value_out_of_the_schema_range_is_not_encodable() -> None:
    from dataclasses import replace

    from schema_registry.events import EventDeadLettered

    dead = EventDeadLettered(
        id="d",
        source="sfe.ingest",
        subject="/data/LeadChangeEvent",
        time=NOW,
        original_topic="sf.cdc.Lead",
        original_partition=0,
        original_offset=10,
        original_key=None,
        original_value=b"{}",
        reason="test",
        error_type="ValueError",
    )
    Codec().encode("dlq.ingest", dead)
    with pytest.raises(EventNotEncodable, match="original_partition"):
        Codec().encode("dlq.ingest", replace(dead, original_partition=2**40))
