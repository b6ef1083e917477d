"""A record a consumer cannot decode becomes a dead letter that keeps its bytes and the reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schema_registry.codec import Codec
from schema_registry.dead_letters import dead_letter
from schema_registry.errors import UndecodableEvent
from schema_registry.events import EventDeadLettered

WHEN = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def undecodable(value: bytes) -> UndecodableEvent:
    with pytest.raises(UndecodableEvent) as caught:
        Codec().decode("sf.cdc.Lead", value, [("sfe-schema-subject", b"sf.cdc.Lead-value")])
    return caught.value


def letter(**overrides: object) -> EventDeadLettered:
    arguments: dict[str, object] = {
        "consumer": "projections.postgres",
        "topic": "sf.cdc.Lead",
        "partition": 3,
        "offset": 1207,
        "key": b"00Q000000000001AAA",
        "value": b"\xff\x00garbage",
        "headers": [("sfe-schema-subject", b"sf.cdc.Lead-value"), ("trace", None), ("t", "x")],
        "error": undecodable(b"\xff\x00garbage"),
        "time": WHEN,
    }
    arguments.update(overrides)
    return dead_letter(**arguments)  # type: ignore[arg-type]


def test_the_dead_letter_keeps_the_raw_record_and_the_reason() -> None:
    event = letter()
    assert event.original_value == b"\xff\x00garbage"
    assert event.original_key == b"00Q000000000001AAA"
    assert (event.original_topic, event.original_partition, event.original_offset) == (
        "sf.cdc.Lead",
        3,
        1207,
    )
    assert event.original_headers == {
        "sfe-schema-subject": b"sf.cdc.Lead-value",
        "trace": b"",
        "t": b"x",
    }
    assert "sfe-schema-version" in event.reason
    assert event.error_type == "UndecodableEvent"
    assert event.subject == "00Q000000000001AAA"


def test_the_same_record_gives_the_same_dead_letter() -> None:
    assert letter() == letter()
    assert letter().id != letter(offset=1208).id
    assert letter().id != letter(consumer="agents.lead_qualification").id


def test_a_keyless_record_is_named_by_its_coordinates() -> None:
    assert letter(key=None).subject == "sf.cdc.Lead[3]@1207"


def test_other_errors_keep_their_text_and_type() -> None:
    event = letter(error=KeyError("Status"))
    assert (event.reason, event.error_type) == ("'Status'", "KeyError")


def test_the_dead_letter_itself_is_encodable() -> None:
    event = letter()
    encoded = Codec().encode("dlq.ingest", event)
    assert Codec().decode("dlq.ingest", encoded.value, encoded.headers) == event
