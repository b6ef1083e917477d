"""The compiled encoders and decoders give exactly what the reference path gives.

``schema_registry.compiled`` generates, per schema version and event class, code that
goes from an event to Avro bytes and back in one pass. These tests hold it to the
reference path (``to_record`` + the schema check + fastavro's ``schemaless_writer``;
fastavro's ``schemaless_reader`` + upcasting + ``from_record``):

- for valid events of every subject, the compiled encoder itself (no fallback) writes
  fastavro's bytes, and the compiled decoder itself reads the reference path's event,
  with the same types all the way down;
- for values the hints do not describe and for broken bytes, ``Codec`` gives the same
  bytes, events or errors (type and message) as a codec on the reference path, and
  decoding raises only :class:`UndecodableEvent`, with a reason;
- records of older schema versions still decode (and upcast) as before.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schema_registry import catalog, compiled
from schema_registry.codec import Codec, EncodedValue
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    Event,
    Factor,
    LeadRoute,
    LeadScored,
    ModelRef,
    OpportunityInsightsComputed,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from schema_registry.records import from_record, to_record
from schema_registry.wire import SelfDescribingFormat, names_version
from tests.schemas.strategies import records

SUBJECTS = sorted(catalog.EVENT_TYPES)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {"id": "e-1", "source": "tests", "subject": "s-1", "time": NOW}


FAST = Codec()
REFERENCE = Codec(compiled=False)


def topic_of(subject: str) -> str:
    return subject.removesuffix("-value")


def same(left: Any, right: Any) -> bool:
    """Equal, with the same types all the way down (``"A" == StrEnum("A")`` is not enough)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(map(same, left, right))
    if dataclasses.is_dataclass(left):
        return all(
            same(getattr(left, spec.name), getattr(right, spec.name))
            for spec in dataclasses.fields(left)
        ) and list(vars(left)) == list(vars(right))
    if isinstance(left, datetime):
        return left == right and left.tzinfo == right.tzinfo
    return bool(left == right)


def outcome(action: Callable[[], Any]) -> tuple[str, Any]:
    """What ``action`` returned, or the type and text of what it raised."""
    try:
        return ("returned", action())
    except Exception as exc:
        # fastavro's messages name its buffer object by address, which differs per call.
        return ("raised", (type(exc), re.sub(r" at 0x[0-9a-f]+", " at 0x…", str(exc))))


def assert_same_outcome(fast: Callable[[], Any], reference: Callable[[], Any]) -> None:
    (fast_kind, fast_value), (ref_kind, ref_value) = outcome(fast), outcome(reference)
    assert fast_kind == ref_kind, (fast_value, ref_value)
    if fast_kind == "raised":
        assert fast_value == ref_value
    elif isinstance(fast_value, EncodedValue):
        assert fast_value.value == ref_value.value
        assert fast_value.headers == ref_value.headers
    else:
        assert same(fast_value, ref_value), (fast_value, ref_value)


def fastavro_bytes(record: dict[str, Any], subject: str, version: int | None = None) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, catalog.schema(subject, version).parsed, record)
    return buffer.getvalue()


def headers_of(subject: str, version: int) -> list[tuple[str, bytes]]:
    return [
        ("sfe-schema-subject", subject.encode()),
        ("sfe-schema-version", str(version).encode()),
        ("content-type", b"application/vnd.sfe.avro"),
    ]


def reference_event(subject: str, payload: bytes) -> Event:
    """fastavro's reader, then ``from_record``: what decoding gave before."""
    buffer = io.BytesIO(payload)
    record = schemaless_reader(buffer, catalog.schema(subject).parsed)
    assert buffer.tell() == len(payload)
    return from_record(catalog.event_type(subject), record)


# --- The compiled code itself, on valid events of every subject. ------------------------


def test_every_subject_has_a_compiled_encoder_and_decoder() -> None:
    for subject, event_class in catalog.EVENT_TYPES.items():
        latest = catalog.schema(subject)
        assert compiled.encoder(latest, event_class) is not None, subject
        assert compiled.decoder(latest, event_class) is not None, subject
        assert compiled.encoder(latest, event_class) is compiled.encoder(latest, event_class)


@pytest.mark.parametrize("subject", SUBJECTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_code_writes_fastavros_bytes_and_reads_the_reference_event(
    subject: str, data: st.DataObject
) -> None:
    record = data.draw(records(subject))
    event_class = catalog.event_type(subject)
    latest = catalog.schema(subject)
    event = from_record(event_class, record)
    encode = compiled.encoder(latest, event_class)
    decode = compiled.decoder(latest, event_class)
    assert encode is not None and decode is not None

    expected = fastavro_bytes(to_record(event), subject)
    payload = encode(event)  # raises if the compiled encoder defers: it must not here
    assert payload == expected

    decoded = decode(payload)  # likewise
    assert same(decoded, reference_event(subject, payload))
    assert same(decoded, event)

    encoded = FAST.encode(topic_of(subject), event)
    assert encoded.value == expected
    assert encoded.headers == headers_of(subject, latest.version)
    assert same(FAST.decode(topic_of(subject), encoded.value, encoded.headers), decoded)


def lead_change(**changes: Any) -> RecordChanged:
    header = ChangeEventHeader(
        entity_name="Lead",
        record_ids=("00Q1", "00Q2"),
        change_type=ChangeType.UPDATE,
        change_origin="com/salesforce/api/rest/62.0",
        transaction_key="t" * 70,  # a length of two varint bytes
        sequence_number=1,
        commit_timestamp=NOW,
        commit_number=2**40,
        commit_user="005",
        changed_fields=("Status", "Rating"),
    )
    values: dict[str, Any] = {
        "header": header,
        "replay_id": "1",
        "event_uuid": None,
        "fields": {"Status": "Open", "A": 1, "B": 2.5, "C": None, "D": True, "E": False},
    }
    return RecordChanged(**{**ENVELOPE, **values, **changes})


def scored(**changes: Any) -> LeadScored:
    values: dict[str, Any] = {
        "model": ModelRef(name="lead", version="3"),
        "features": {"AnnualRevenue": 2.5e6, "NumberOfEmployees": 120, "Title": "CTO"},
        "factors": (Factor(name="Title", contribution=0.2), Factor(name="x", contribution=-1)),
        "enrichment": {"news": '{"funding": "B"}'},
        "einstein_score": 72.0,
        "model_score": 88.5,
        "enhanced_score": 81.9,
        "route": LeadRoute.SENIOR_AE,
        "reasoning": "Senior buyer. ✓ ünïcödé 🚀",
    }
    return LeadScored(**{**ENVELOPE, **values, **changes})


#: Valid events with values at the edges of what the encodings hold.
EDGE_EVENTS: list[tuple[str, Event]] = [
    ("sf.cdc.Lead", lead_change()),
    ("sf.cdc.Lead", lead_change(fields={f"F{i}": i for i in range(3000)})),  # long counts
    ("sf.cdc.Lead", lead_change(fields={"A": 2**63 - 1, "B": -(2**63), "C": 2**63, "D": 2**70})),
    ("sf.cdc.Lead", lead_change(fields={"A": -0.0, "B": float("inf"), "C": 2**53 + 1})),
    ("sf.cdc.Lead", lead_change(fields={"x" * 5000: "y" * 70_000})),
    ("sf.cdc.Lead", lead_change(time=datetime(1900, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC))),
    (
        "sf.cdc.Lead",
        lead_change(time=datetime(2026, 1, 1, 7, tzinfo=timezone(timedelta(hours=-5)))),
    ),
    ("sf.cdc.Lead", lead_change(header=dataclasses.replace(lead_change().header, record_ids=[]))),
    ("decisions.leads", scored()),
    ("decisions.leads", scored(einstein_score=None, factors=[], features={}, enrichment={})),
    ("decisions.leads", scored(einstein_score=3, model_score=2**60, route="MQL")),
    (
        "decisions.opportunities",
        OpportunityInsightsComputed(
            **ENVELOPE,
            model=ModelRef(name="win", version="1"),
            win_probability=0.5,
            risk_factors=("a",),
            recommended_actions=(),
            next_best_action="call",
            optimal_close_date=date(2027, 3, 1),
            at_risk=False,
        ),
    ),
    (
        "commands.salesforce",
        SalesforceWriteRequested(
            **ENVELOPE,
            operation=SalesforceOperation.UPDATE,
            sobject="Lead",
            record_id=None,
            fields={"AI_Score__c": 81.9, "Flag__c": True, "N__c": None},
        ),
    ),
]


@pytest.mark.parametrize(("topic", "event"), EDGE_EVENTS, ids=lambda item: str(item)[:40])
def test_edge_values_encode_and_decode_as_before(topic: str, event: Event) -> None:
    subject = f"{topic}-value"
    assert_same_outcome(lambda: FAST.encode(topic, event), lambda: REFERENCE.encode(topic, event))
    encoded = REFERENCE.encode(topic, event)
    payload = compiled.encoder(catalog.schema(subject), type(event))(event)  # type: ignore[misc]
    assert payload == encoded.value == fastavro_bytes(to_record(event), subject)
    assert_same_outcome(
        lambda: FAST.decode(topic, encoded.value, encoded.headers),
        lambda: REFERENCE.decode(topic, encoded.value, encoded.headers),
    )


# --- Values the hints do not describe: the same bytes or the same error. ----------------


class Text(str):
    """A ``str`` subclass: valid where a string is, but not an exact ``str``."""


class Number(int):
    """An ``int`` subclass."""


#: Values that fit some Avro types and not others, or none.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**63,
    10**400,
    Number(3),
    1.5,
    float("nan"),
    "x",
    "CREATE",
    "SENIOR_AE",
    "\ud800",  # a lone surrogate: not UTF-8 encodable
    Text("x"),
    b"x",
    bytearray(b"x"),
    [],
    ["x"],
    [1, None],
    (),
    ("x",),
    ("string", "x"),
    {},
    {"k": "v"},
    {"k": 1},
    {1: "v"},
    {"k": ChangeType.CREATE},
    {"k": Text("v")},
    {"k": [1]},
    ChangeType.CREATE,
    LeadRoute.MQL,
    SalesforceOperation.UPDATE,
    NOW,
    datetime(2026, 1, 1),  # naive
    date(2026, 1, 1),
    ModelRef(name="n", version="v"),
    Factor(name="f", contribution=1.0),
    (Factor(name="f", contribution=1.0), None),
    object(),
]


def replaced(event: Any, path: tuple[str, ...], value: Any) -> Any:
    """``event`` with the attribute at ``path`` (through nested dataclasses) set to ``value``."""
    if len(path) == 1:
        copy = dataclasses.replace(event)
        object.__setattr__(copy, path[0], value)
        return copy
    inner = replaced(getattr(event, path[0]), path[1:], value)
    return replaced(event, path[:1], inner)


def attribute_paths(instance: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for spec in dataclasses.fields(instance):
        paths.append((*prefix, spec.name))
        value = getattr(instance, spec.name)
        if dataclasses.is_dataclass(value):
            paths.extend(attribute_paths(value, (*prefix, spec.name)))
    return paths


@pytest.mark.parametrize("subject", SUBJECTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_odd_values_encode_as_the_reference_path_does(subject: str, data: st.DataObject) -> None:
    event = from_record(catalog.event_type(subject), data.draw(records(subject)))
    path = data.draw(st.sampled_from(attribute_paths(event)))
    value = data.draw(st.sampled_from(ODD_VALUES))
    odd = replaced(event, path, value)
    topic = topic_of(subject)
    assert_same_outcome(lambda: FAST.encode(topic, odd), lambda: REFERENCE.encode(topic, odd))


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_an_odd_map_value_encodes_as_the_reference_path_does(value: Any) -> None:
    for topic, event in (
        ("sf.cdc.Lead", lead_change(fields={"A": value, "B": 1})),
        ("decisions.leads", scored(enrichment={"a": value})),
        ("decisions.leads", scored(factors=(Factor(name="a", contribution=value),))),
        ("decisions.leads", scored(factors=(value,))),
    ):
        assert_same_outcome(
            lambda: FAST.encode(topic, event),  # noqa: B023
            lambda: REFERENCE.encode(topic, event),  # noqa: B023
        )


# --- Bytes: broken ones fail as before, odd ones decode as before. ----------------------


def valid_payload() -> tuple[bytes, list[tuple[str, bytes]]]:
    encoded = REFERENCE.encode("sf.cdc.Lead", lead_change())
    return encoded.value, encoded.headers


def lead_reason(value: bytes, headers: Any = None) -> str:
    """The reason of both codecs, which must be the same."""
    if headers is None:
        headers = valid_payload()[1]
    reasons = []
    for codec in (FAST, REFERENCE):
        with pytest.raises(UndecodableEvent) as caught:
            codec.decode("sf.cdc.Lead", value, headers)
        assert caught.value.reason
        reasons.append(re.sub(r" at 0x[0-9a-f]+", " at 0x…", caught.value.reason))
    assert reasons[0] == reasons[1]
    return reasons[0]


def test_malformed_payloads_are_undecodable_with_the_reference_reason() -> None:
    value, _headers = valid_payload()
    assert "bytes left" in lead_reason(value + b"\x00")
    lead_reason(value[:-3])
    lead_reason(value[:1])
    lead_reason(b"")
    lead_reason(b"\xff" * 11)  # a varint of more than ten bytes
    lead_reason(b"\x80" * 10 + b"\x02")  # past 64 bits
    lead_reason(b"\x06\xff\xfe\xfd" + value[4:])  # invalid UTF-8 in the id
    lead_reason(b"\x03" + value[1:])  # a negative length


def reencoded(record: dict[str, Any]) -> bytes:
    return fastavro_bytes(record, "sf.cdc.Lead-value")


def test_a_union_index_out_of_range_is_undecodable() -> None:
    record = to_record(lead_change())
    record["replay_id"] = None
    value = reencoded(record)
    marker = value.index(b"\x00", value.index(b"005"))  # replay_id's union index (null)
    broken = value[:marker] + b"\x0a" + value[marker + 1 :]  # branch 5 of 2
    assert "not Avro" in lead_reason(broken)


def test_an_enum_index_out_of_range_decodes_or_fails_as_before() -> None:
    value = reencoded(to_record(lead_change()))
    header = dataclasses.replace(lead_change().header, change_type=ChangeType.DELETE)
    other = reencoded(to_record(lead_change(header=header)))
    marker = next(index for index, (a, b) in enumerate(zip(value, other, strict=True)) if a != b)
    assert value[marker] == 2  # UPDATE, the second symbol
    lead_reason(value[:marker] + b"\x7e" + value[marker + 1 :])
    # fastavro reads index -1 as the last symbol; the compiled decoder leaves it to fastavro.
    negative = value[:marker] + b"\x01" + value[marker + 1 :]
    headers = valid_payload()[1]
    decoded = FAST.decode("sf.cdc.Lead", negative, headers)
    assert_same_outcome(lambda: decoded, lambda: REFERENCE.decode("sf.cdc.Lead", negative, headers))
    assert decoded.header.change_type is ChangeType.GAP_OVERFLOW  # type: ignore[attr-defined]


def test_a_wrong_type_field_is_undecodable_with_the_reference_reason() -> None:
    record = {**to_record(lead_change()), "type": "LeadScored"}
    assert "LeadScored" in lead_reason(reencoded(record))
    wrong_version = {**to_record(lead_change()), "schema_version": 2}
    assert "schema version" in lead_reason(reencoded(wrong_version))


def test_bytes_fastavro_reads_leniently_decode_as_before() -> None:
    """Encodings the compiled decoder does not vouch for still decode (by fastavro)."""
    record = to_record(lead_change(fields={"A": 1, "B": "b"}, is_snapshot=True))
    value = reencoded(record)
    # A boolean byte of 2 (fastavro: true), at the end: is_snapshot, is_echo.
    assert value[-2:] == b"\x01\x00"
    lenient = value[:-2] + b"\x02\x00"
    headers = valid_payload()[1]
    assert_same_outcome(
        lambda: FAST.decode("sf.cdc.Lead", lenient, headers),
        lambda: REFERENCE.decode("sf.cdc.Lead", lenient, headers),
    )
    assert FAST.decode("sf.cdc.Lead", lenient, headers).is_snapshot is True  # type: ignore[attr-defined]
    # The map in one block with a negative count and its byte size.
    entries = b"\x02A\x04\x02" + b"\x02B\x08\x02b"
    plain = b"\x04" + entries + b"\x00"
    assert plain in value
    blocked = value.replace(plain, b"\x03" + bytes([len(entries) << 1]) + entries + b"\x00")
    decoded = FAST.decode("sf.cdc.Lead", blocked, headers)
    assert_same_outcome(lambda: decoded, lambda: REFERENCE.decode("sf.cdc.Lead", blocked, headers))
    assert decoded.fields == {"A": 1, "B": "b"}  # type: ignore[attr-defined]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_payloads_decode_or_fail_as_before(data: st.DataObject) -> None:
    subject = data.draw(st.sampled_from(SUBJECTS))
    latest = catalog.schema(subject)
    event = from_record(catalog.event_type(subject), data.draw(records(subject)))
    value = bytearray(REFERENCE.encode(topic_of(subject), event).value)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        position = data.draw(st.integers(0, max(len(value) - 1, 0)))
        if action == "flip" and value:
            value[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del value[position:]
        elif action == "insert":
            value[position:position] = data.draw(st.binary(min_size=1, max_size=3))
        else:
            value += data.draw(st.binary(min_size=1, max_size=3))
    damaged = bytes(value)
    headers = headers_of(subject, latest.version)
    topic = topic_of(subject)
    fast = outcome(lambda: FAST.decode(topic, damaged, headers))
    assert_same_outcome(
        lambda: FAST.decode(topic, damaged, headers),
        lambda: REFERENCE.decode(topic, damaged, headers),
    )
    if fast[0] == "raised":
        assert fast[1][0] is UndecodableEvent


# --- Headers, formats and older versions. -----------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("sfe-schema-subject", "sf.cdc.Lead-value"), ("sfe-schema-version", "1")],  # text
        [("sfe-schema-subject", b"sf.cdc.Lead-value"), ("sfe-schema-version", b"01")],
        [("sfe-schema-subject", b"sf.cdc.Lead-value"), ("sfe-schema-version", b"2")],
        [("sfe-schema-subject", b"sf.cdc.Case-value"), ("sfe-schema-version", b"1")],
        [
            ("sfe-schema-subject", b"sf.cdc.Lead-value"),
            ("sfe-schema-version", b"1"),
            ("sfe-schema-version", None),  # without a value: does not count
        ],
        [
            ("sfe-schema-subject", b"sf.cdc.Lead-value"),
            ("sfe-schema-version", b"2"),
            ("sfe-schema-version", b"1"),  # the last one counts
        ],
        [("sfe-schema-subject", "\ud800"), ("sfe-schema-version", b"1")],
        [("sfe-schema-subject",)],
    ],
    ids=repr,
)
def test_headers_are_read_as_before(headers: Any) -> None:
    value = valid_payload()[0]
    assert_same_outcome(
        lambda: FAST.decode("sf.cdc.Lead", value, headers),
        lambda: REFERENCE.decode("sf.cdc.Lead", value, headers),
    )


def test_names_version_only_accepts_the_exact_subject_and_version() -> None:
    headers = [("sfe-schema-subject", b"a-value"), ("sfe-schema-version", b"3")]
    assert names_version(headers, b"a-value", b"3")
    assert names_version([(k, v.decode()) for k, v in headers], b"a-value", b"3")
    assert not names_version(headers, b"a-value", b"2")
    assert not names_version(headers[:1], b"a-value", b"3")
    assert not names_version([("x",)], b"a-value", b"3")  # type: ignore[list-item]


def test_other_payload_types_take_the_reference_path() -> None:
    value, headers = valid_payload()
    for odd in (bytearray(value), memoryview(value)):
        assert_same_outcome(
            lambda: FAST.decode("sf.cdc.Lead", odd, headers),  # type: ignore[arg-type]  # noqa: B023
            lambda: REFERENCE.decode("sf.cdc.Lead", odd, headers),  # type: ignore[arg-type]  # noqa: B023
        )


@pytest.mark.parametrize(
    "version", [version.version for version in catalog.versions("command.results-value")]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_older_versions_decode_and_upcast_as_before(version: int, data: st.DataObject) -> None:
    subject = "command.results-value"
    record = data.draw(records(subject, version))
    payload = fastavro_bytes(record, subject, version)
    headers = headers_of(subject, version)
    assert_same_outcome(
        lambda: FAST.decode("command.results", payload, headers),
        lambda: REFERENCE.decode("command.results", payload, headers),
    )


def test_an_unknown_topic_fails_as_before() -> None:
    value, headers = valid_payload()
    assert_same_outcome(
        lambda: FAST.decode("unknown.topic", value, headers),
        lambda: REFERENCE.decode("unknown.topic", value, headers),
    )
    assert_same_outcome(
        lambda: FAST.encode("unknown.topic", lead_change()),
        lambda: REFERENCE.encode("unknown.topic", lead_change()),
    )
    assert_same_outcome(
        lambda: FAST.encode("decisions.leads", lead_change()),
        lambda: REFERENCE.encode("decisions.leads", lead_change()),
    )


def test_a_subclass_of_the_format_takes_the_reference_path() -> None:
    class Framed(SelfDescribingFormat):
        """A format of its own, which the compiled code knows nothing of."""

        def write(self, topic: str, subject: str, record: dict[str, Any]) -> Any:
            value, headers = super().write(topic, subject, record)
            return b"!" + value, headers

    assert Codec(Framed()).encode("sf.cdc.Lead", lead_change()).value[:1] == b"!"
    assert Codec(compiled=False)._plan("sf.cdc.Lead").encoder is None
    assert FAST._plan("sf.cdc.Lead").encoder is not None


@settings(max_examples=500, deadline=None)
@given(
    number=st.one_of(
        st.integers(0, 2**64 - 1),
        st.sampled_from([0, 127, 128, 2**14 - 1, 2**14, 2**49 - 1, 2**49, 2**64 - 1]),
    ),
    raw=st.binary(min_size=1, max_size=12),
)
def test_the_unrolled_varints_are_the_plain_ones(number: int, raw: bytes) -> None:
    from schema_registry.compiled import (
        _read_varint,
        _read_varint_loop,
        _uvarint,
        _uvarint_loop,
    )

    assert _uvarint(number) == _uvarint_loop(number)
    signed = (number >> 1) ^ -(number & 1)
    assert _read_varint(_uvarint(number) + b"\x00", 0) == (signed, len(_uvarint(number)))
    assert outcome(lambda: _read_varint(raw, 0)) == outcome(lambda: _read_varint_loop(raw, 0))
