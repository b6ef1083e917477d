"""Every event type survives encode → decode unchanged, in both wire formats."""

from __future__ import annotations

import io
import struct

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import schemaless_reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schema_registry import catalog
from schema_registry.codec import Codec
from schema_registry.records import from_record, to_record
from schema_registry.wire import ConfluentFormat, SelfDescribingFormat
from tests.schemas.strategies import records

SUBJECTS = sorted(catalog.EVENT_TYPES)


def topic_of(subject: str) -> str:
    return subject.removesuffix("-value")


@pytest.mark.parametrize("subject", SUBJECTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_self_describing_round_trip(subject: str, data: st.DataObject) -> None:
    record = data.draw(records(subject))
    event = from_record(catalog.event_type(subject), record)
    assert to_record(event) == record  # class and schema agree field for field

    codec = Codec(SelfDescribingFormat())
    encoded = codec.encode(topic_of(subject), event)
    assert dict(encoded.headers)["sfe-schema-subject"] == subject.encode()
    assert codec.decode(topic_of(subject), encoded.value, encoded.headers) == event


@pytest.fixture(scope="module")
def registry() -> SchemaRegistryClient:
    """confluent-kafka's in-memory registry (``mock://``): the real serializers, no server."""
    return SchemaRegistryClient.new_client({"url": "mock://codec-tests"})


@pytest.mark.parametrize("subject", SUBJECTS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_confluent_round_trip(
    registry: SchemaRegistryClient, subject: str, data: st.DataObject
) -> None:
    event = from_record(catalog.event_type(subject), data.draw(records(subject)))
    codec = Codec(ConfluentFormat(registry), topic_prefix="rt.")
    topic = "rt." + topic_of(subject)

    encoded = codec.encode(topic, event)
    magic, schema_id = struct.unpack(">bI", encoded.value[:5])
    assert magic == 0
    registered = registry.get_latest_version(f"{topic}-value")  # TopicNameStrategy
    assert registered.schema_id == schema_id
    assert encoded.headers == []
    assert codec.decode(topic, encoded.value) == event


@settings(max_examples=20, deadline=None)
@given(record=records("usage.signals-value"))
def test_the_self_describing_payload_is_plain_avro_of_the_named_version(
    record: dict[str, object],
) -> None:
    event = from_record(catalog.event_type("usage.signals-value"), record)
    encoded = Codec().encode("usage.signals", event)
    headers = dict(encoded.headers)
    version = int(headers["sfe-schema-version"])
    schema = catalog.schema(headers["sfe-schema-subject"].decode(), version).parsed
    assert schemaless_reader(io.BytesIO(encoded.value), schema) == record


def test_the_settings_choose_the_wire_format() -> None:
    from sfe.settings import Settings

    assert isinstance(
        Codec.from_settings(Settings(schema_registry_url=None)).wire, SelfDescribingFormat
    )
    with_registry = Settings(schema_registry_url="http://127.0.0.1:8081")
    assert isinstance(Codec.from_settings(with_registry).wire, ConfluentFormat)
