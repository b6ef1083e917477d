"""Hostile input: CDC messages, Outbound Messages (SOAP), the signed webhook, SOQL built from events.

Every hostile input must end in a dead letter with a reason (``dlq.ingest``) or a 4xx
answer, never a crash, a 5xx, or a valid event lost next to it; no value taken from an
event may change the text of a SOQL query. Property tests (Hypothesis) feed the pure
conversion and the ingestor arbitrary JSON-ish values; the integration tests run the
real ingestor and the real aiohttp ingress against the broker, and backfill,
reconcile and the gap re-reader against the org simulator, asserting on the SOQL text
the simulator received.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simple_salesforce import Salesforce

from projections.reconcile import RecordExpectation, compare, describe_fields
from schema_registry.codec import Codec
from schema_registry.errors import SchemaError
from schema_registry.events import Event, EventDeadLettered, RecordChanged
from sfe.settings import Settings
from simulator.app import RunningSimulator, start_in_thread
from simulator.config import SimConfig
from streams.ingest.appender import (
    AppendFailed,
    Checkpoint,
    OutboundRecord,
    TransactionalAppender,
)
from streams.ingest.backfill import run_backfill
from streams.ingest.changes import EchoPolicy, MalformedStreamingMessage, split_message
from streams.ingest.events import event_of
from streams.ingest.ingestor import DLQ_TOPIC, Ingestor, IngestSettings, OversizedEvent
from streams.ingest.ingress import (
    ACK,
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    Ingress,
    parse_outbound_message,
    sign,
)
from streams.ingest.reader import (
    SalesforceRecordReader,
    UnsafeQueryValue,
    checked_object_name,
    checked_record_id,
)
from streams.salesforce.rest import connect
from tests.kafka_helpers import catalogue_topics

POLICY = EchoPolicy(client_id="sfe-pipeline")
ORG = "00D5g000000ABCDEAA"
SECRET = b"hostile-input-secret"
SALESFORCE_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
DEPTH = 10_000  # levels of nesting of the "deep" hostile values

HOSTILE_STRINGS = [
    "' OR Id != null --",
    "00Q000000000001' OR Name != '",
    "\\' OR Id != null --",
    "Lead WHERE Id != null",
    "x'); DELETE FROM Lead; --",
    "\\",
    "'",
    '"',
    "line\nbreak\r\nand\ttab",
    "\u202eunicode \u0130\u00df\u2028\U0001f600",
    "\x00nul",
    "\ud800",  # a lone surrogate: JSON "\ud800" decodes to it
    "%27%20OR%201%3D1",
    "<![CDATA[x]]>&amp;",
    "",
    "GAP_OVERFLOW",
    "00Q00000000000",  # 14 characters
    "00Q000000000000001 ",
]

settings.register_profile(
    "hostile",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def deep(depth: int = DEPTH, leaf: Any = "bottom") -> Any:
    """``depth`` levels of alternately nested objects and lists, built without recursion."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def deep_objects(depth: int) -> dict[str, Any]:
    """``depth`` levels of nested objects (compound fields are one or two levels deep)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


# ---------------------------------------------------------------------------------------
# Strategies: JSON-ish values, and valid messages with one part made hostile.

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**30, -(10**20), 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(HOSTILE_STRINGS),
)


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """JSON-ish values: objects and lists of ``leaves``, a few levels deep."""
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=20,
    )


json_values = nested(scalars)
#: Past Python's int-to-text limit (4300 digits): str() of it raises.
HUGE_INT = 10**5000
hostile_values = st.one_of(
    nested(scalars | st.just(0).map(lambda _: HUGE_INT)),  # built late: it has no repr
    st.integers(min_value=50, max_value=DEPTH).map(deep),
    st.sampled_from(["x" * 1_200_000, ["y" * 300_000] * 4]),  # over the 1 MB record limit
)

HEADER_KEYS = [
    "entityName",
    "recordIds",
    "changeType",
    "changeOrigin",
    "transactionKey",
    "sequenceNumber",
    "commitTimestamp",
    "commitNumber",
    "commitUser",
    "changedFields",
    "nulledFields",
    "diffFields",
]
PATHS: list[tuple[Any, ...]] = [
    ("channel",),
    ("data",),
    ("data", "event"),
    ("data", "event", "replayId"),
    ("data", "payload"),
    ("data", "payload", "ChangeEventHeader"),
    ("data", "payload", "Status"),
    ("data", "payload", "Name"),
    ("data", "payload", "ChangeEventHeader", "recordIds", 0),
    *[("data", "payload", "ChangeEventHeader", key) for key in HEADER_KEYS],
]


def lead_change(number: int, record_id: str | None = None, **values: Any) -> dict[str, Any]:
    """A valid CDC message of one Lead (a unique transaction per ``number``)."""
    return {
        "channel": "/data/LeadChangeEvent",
        "data": {
            "schema": "x",
            "event": {"replayId": number},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Lead",
                    "recordIds": [record_id or f"00Q{number:015d}"],
                    "changeType": "UPDATE",
                    "changeOrigin": "com/salesforce/api/rest/62.0",
                    "transactionKey": f"tx-{number}",
                    "sequenceNumber": 1,
                    "commitTimestamp": 1764100000000 + number,
                    "commitNumber": number,
                    "commitUser": "005000000000009AAA",
                    "changedFields": sorted(values),
                },
                **values,
            },
        },
    }


def platform_message(number: int, **payload: Any) -> dict[str, Any]:
    """A valid ``New_Lead__e`` platform event message."""
    return {
        "channel": "/event/New_Lead__e",
        "data": {
            "event": {"replayId": number, "EventUuid": f"uuid-{number}"},
            "payload": {"Lead_Id__c": f"00Q{number:015d}", **payload},
        },
    }


def mutated(message: dict[str, Any], path: tuple[Any, ...], value: Any, drop: bool) -> Any:
    """``message`` with the part at ``path`` replaced by ``value`` (or removed)."""
    copied = copy.deepcopy(message)
    target: Any = copied
    for step in path[:-1]:
        if not isinstance(target, dict | list):
            return copied
        target = target[step]
    if drop and isinstance(target, dict):
        target.pop(path[-1], None)
    elif isinstance(target, dict | list):
        target[path[-1]] = value
    return copied


@st.composite
def hostile_messages(draw: st.DrawFn, number: int = 1) -> Any:
    """A streaming message, possibly valid, mostly not."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "platform", "anything"]))
    if kind == "anything":
        return draw(hostile_values)
    if kind == "platform":
        base = platform_message(number, CreatedDate="2026-11-25T10:00:00Z")
        path = draw(
            st.sampled_from(
                [
                    ("channel",),
                    ("data", "event", "replayId"),
                    ("data", "event", "EventUuid"),
                    ("data", "payload", "CreatedDate"),
                    ("data", "payload", "Lead_Id__c"),
                    ("data", "payload", "Anything__c"),
                ]
            )
        )
    else:
        base = lead_change(number, Status="Working", Name={"LastName": "Byron"})
        path = draw(st.sampled_from(PATHS))
    return mutated(base, path, draw(hostile_values), draw(st.booleans()))


def convert(message: Any) -> list[Event]:
    """The pure conversion the ingestor does: message -> facts -> events."""
    return [event_of(fact) for fact in split_message(message, POLICY)]


class RecordingAppender:
    """Keeps what would be appended (pure-logic stand-in for the transactional appender)."""

    def __init__(self) -> None:
        self.records: list[OutboundRecord] = []
        self.checkpoints: list[Checkpoint] = []

    def append(self, records: Sequence[OutboundRecord], checkpoints: Sequence[Checkpoint]) -> None:
        """Remember one 'transaction'."""
        self.records.extend(records)
        self.checkpoints.extend(checkpoints)


def offline_ingestor(appender: RecordingAppender | None = None) -> Ingestor:
    """An ingestor writing into ``appender`` (no broker: for the pure property tests)."""
    return Ingestor(
        cast(TransactionalAppender, appender or RecordingAppender()),
        Codec(),
        POLICY,
        None,
        IngestSettings(batch_max_records=10_000),
    )


# ---------------------------------------------------------------------------------------
# CDC: the pure conversion and the ingestor's handling of one message.


@settings(settings.get_profile("hostile"))
@given(hostile_messages())
def test_conversion_yields_encodable_events_or_raises_the_documented_error(message: Any) -> None:
    try:
        events = convert(message)
    except MalformedStreamingMessage as exc:
        assert str(exc)
        return
    assert events
    for event in events:
        if isinstance(event, RecordChanged):
            assert SALESFORCE_ID.match(event.subject), event.subject
    try:
        offline_ingestor().encode_delivery(events)
    except (SchemaError, OversizedEvent, MalformedStreamingMessage) as exc:
        assert str(exc)


def expected_outcome(message: Any, seen: set[tuple[str, str]]) -> str:
    """What the ingestor (no record reader) must do: "dead", "appended" or "duplicate".

    Conversion comes before redelivery detection (a malformed message is dead-lettered
    even if its keys were seen); encoding after it. ``seen`` is updated as the
    ingestor's window would be: only by messages that were appended.
    """
    try:
        events = convert(message)
    except MalformedStreamingMessage:
        return "dead"
    keys = {(fact.channel, fact.delivery_key) for fact in split_message(message, POLICY)}
    if keys <= seen:
        return "duplicate"
    try:
        offline_ingestor().encode_delivery(events)
    except (SchemaError, OversizedEvent, MalformedStreamingMessage):
        return "dead"
    if any(  # gap and overflow events need a record reader, which this ingestor lacks
        isinstance(event, RecordChanged) and event.header.change_type.value.startswith("GAP_")
        for event in events
    ):
        return "dead"
    seen |= keys
    return "appended"


@settings(settings.get_profile("hostile"))
@given(st.data())
def test_ingestor_appends_every_valid_message_and_dead_letters_the_rest(
    data: st.DataObject,
) -> None:
    count = data.draw(st.integers(min_value=1, max_value=4), label="count")
    messages = [data.draw(hostile_messages(number)) for number in range(1, count + 1)]

    async def run() -> RecordingAppender:
        appender = RecordingAppender()
        ingestor = offline_ingestor(appender)
        seen: set[tuple[str, str]] = set()
        for message in [*messages, lead_change(999_999, Status="Valid")]:
            expected = expected_outcome(message, seen)
            before = len(ingestor._pending)
            await ingestor.handle(message)  # never raises
            added = ingestor._pending[before:]
            dead = [record for record in added if record.topic == DLQ_TOPIC]
            if expected == "dead":
                assert len(added) == len(dead) == 1  # dead-lettered whole, nothing appended
            elif expected == "duplicate":
                assert added == []
            else:
                assert added and not dead
            if dead:
                event = Codec().decode(DLQ_TOPIC, dead[0].value, list(dead[0].headers))
                assert isinstance(event, EventDeadLettered)
                assert event.reason and event.original_value
                assert len(dead[0].value) < 1_000_000
        await ingestor.flush()
        return appender

    appender = asyncio.run(run())
    # The valid message sent after the hostile ones is appended, whatever they held
    # (even a hostile one with the same transaction key failing first).
    (last,) = convert(lead_change(999_999, Status="Valid"))
    appended = [r for r in appender.records if r.topic == "sf.cdc.Lead"]
    assert last.id in {Codec().decode(r.topic, r.value, list(r.headers)).id for r in appended}


@pytest.mark.parametrize(
    "path",
    [
        (),
        ("data",),
        ("data", "event", "replayId"),
        ("data", "payload", "Status"),
        ("data", "payload", "ChangeEventHeader", "recordIds", 0),
        ("data", "payload", "ChangeEventHeader", "transactionKey"),
        ("data", "payload", "ChangeEventHeader", "changeOrigin"),
        ("data", "payload", "ChangeEventHeader", "changedFields"),
    ],
)
def test_ten_thousand_levels_of_nesting_anywhere_are_malformed_not_a_crash(
    path: tuple[Any, ...],
) -> None:
    message = deep() if not path else mutated(lead_change(7), path, deep(), drop=False)
    with pytest.raises(MalformedStreamingMessage):
        convert(message)
    ingestor = offline_ingestor()
    asyncio.run(ingestor.handle(message))
    (dead,) = ingestor._pending
    event = Codec().decode(DLQ_TOPIC, dead.value, list(dead.headers))
    assert isinstance(event, EventDeadLettered) and event.reason
    assert b"nested deeper than" in (event.original_value or b"")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "payload", "ChangeEventHeader", "commitNumber"), "x"),  # fails converting
        (("data", "payload", "Status"), "x" * 1_200_000),  # fails encoding (too large)
        (("data", "payload", "Name"), deep_objects(40)),  # fails converting (too deep)
    ],
)
def test_a_valid_message_is_not_taken_for_a_redelivery_of_a_failed_hostile_twin(
    path: tuple[Any, ...], value: Any
) -> None:
    """Regression: delivery keys were remembered before conversion, so a hostile message
    with a valid one's transaction key, failing, made the valid one a 'duplicate'."""
    valid = lead_change(11, Status="Working")
    twin = mutated(valid, path, value, False)
    appender = RecordingAppender()
    ingestor = offline_ingestor(appender)

    async def run() -> None:
        await ingestor.handle(twin)
        await ingestor.handle(valid)
        await ingestor.flush()

    asyncio.run(run())
    assert [r.topic for r in appender.records] == [DLQ_TOPIC, "sf.cdc.Lead"]


# ---------------------------------------------------------------------------------------
# CDC through the real ingestor and broker: hostile and valid messages interleaved.

HOSTILE_CDC: list[Any] = [
    [],
    "not an object",
    42,
    {"channel": "/data/LeadChangeEvent"},
    mutated(lead_change(1), ("data", "payload", "ChangeEventHeader"), None, True),
    mutated(lead_change(2), ("data", "payload", "ChangeEventHeader", "recordIds"), "00Q1", False),
    mutated(lead_change(3), ("data", "payload", "ChangeEventHeader", "recordIds", 0), 7, False),
    mutated(lead_change(4), ("data", "payload", "ChangeEventHeader", "changeType"), "DROP", False),
    mutated(lead_change(5), ("data", "payload", "ChangeEventHeader", "changeType"), [1], False),
    mutated(
        lead_change(6), ("data", "payload", "ChangeEventHeader", "sequenceNumber"), 1e309, False
    ),
    mutated(
        lead_change(7), ("data", "payload", "ChangeEventHeader", "commitTimestamp"), 10**30, False
    ),
    mutated(
        lead_change(8),
        ("data", "payload", "ChangeEventHeader", "commitTimestamp"),
        -(10**20),
        False,
    ),
    mutated(
        lead_change(9), ("data", "payload", "ChangeEventHeader", "commitNumber"), "twelve", False
    ),
    mutated(
        lead_change(10), ("data", "payload", "ChangeEventHeader", "entityName"), "Le'ad", False
    ),
    mutated(lead_change(12), ("data", "event", "replayId"), {"nested": True}, False),
    mutated(lead_change(13), ("data", "event", "replayId"), 10**5000, False),
    mutated(lead_change(14), ("channel",), "x" * 2_000_000, False),
    lead_change(15, record_id="' OR Id != null --"),
    lead_change(16, record_id="00Q000000000016\\'"),
    lead_change(17, record_id="\ud800" * 18),
    lead_change(18, Status="x" * 1_200_000),  # over the broker's record size
    mutated(
        lead_change(19), ("data", "payload", "ChangeEventHeader", "changedFields"), "Status", False
    ),
    lead_change(20, Name=deep()),
    mutated(lead_change(21), ("data", "payload", "Status"), deep(), False),
    deep(),
    {"channel": "/event/New_Lead__e", "data": {"event": {"replayId": 22}, "payload": []}},
    platform_message(23, CreatedDate=10**30),
    platform_message(24, Anything__c=deep()),
    mutated(platform_message(25), ("channel",), "/event/No_Such__e", False),
]


@pytest.fixture
def prefix(stack: Settings) -> Iterator[str]:
    """Every catalogue topic under a fresh prefix, deleted afterwards."""
    with catalogue_topics(stack) as prefix:
        yield prefix


def broker_ingestor(stack: Settings, prefix: str) -> Ingestor:
    """An ingestor appending to the real broker under ``prefix``."""
    appender = TransactionalAppender(
        stack.kafka_bootstrap,
        f"tx-{prefix}",
        prefix + "sfe.ingest.checkpoints",
        Codec(topic_prefix=prefix),
    )
    return Ingestor(
        appender,
        Codec(topic_prefix=prefix),
        POLICY,
        None,
        IngestSettings(batch_max_records=16, topic_prefix=prefix),
    )


def read(stack: Settings, prefix: str, topic: str) -> list[Any]:
    """Every committed event of ``topic`` now: read to the end of each partition, decoded.

    Partitions are assigned (no consumer group to join), and the end is the partition
    EOF, so the answer is exact (nothing more can be on the topic) and quick.
    """
    name = prefix + topic
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"hostile-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    codec = Codec(topic_prefix=prefix)
    events: list[Any] = []
    try:
        partitions = consumer.list_topics(name, 10).topics[name].partitions
        consumer.assign([TopicPartition(name, number, OFFSET_BEGINNING) for number in partitions])
        pending = set(partitions)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
                continue
            if error is not None:
                raise KafkaException(error)
            raw_headers = cast(list[tuple[str, bytes | None]], message.headers() or [])
            headers = [(key, value or b"") for key, value in raw_headers]
            events.append(codec.decode(name, message.value(), headers))
        assert not pending, f"{name}: partitions {sorted(pending)} not read to the end"
    finally:
        consumer.close()
    return events


@pytest.mark.integration
async def test_hostile_and_valid_messages_through_the_real_ingestor(
    stack: Settings, prefix: str
) -> None:
    ingestor = broker_ingestor(stack, prefix)
    ingestor.start()
    valid = [
        lead_change(100 + i, Status=f"s{i}", Name={"LastName": "O'Brien\\"}) for i in range(40)
    ]
    # A hostile twin of a valid message (same transaction key, failing) comes just before it.
    twin = mutated(valid[5], ("data", "payload", "ChangeEventHeader", "commitNumber"), "x", False)
    hostile = iter(HOSTILE_CDC)
    mixed: list[Any] = []
    for index, message in enumerate(valid):
        if index == 5:
            mixed.append(twin)
        mixed.append(message)
        following = next(hostile, None)  # no hostile message is None
        if following is not None:
            mixed.append(following)
    mixed.extend(hostile)
    hostile_count = len(HOSTILE_CDC) + 1
    assert len(mixed) == len(valid) + hostile_count
    for message in mixed:
        await ingestor.handle(message)  # never raises
    await ingestor.flush()

    expected_ids = {event.id for message in valid for event in convert(message)}
    changes = read(stack, prefix, "sf.cdc.Lead")
    assert {event.id for event in changes} == expected_ids
    assert len(changes) == len(valid)
    assert all(event.fields["Name.LastName"] == "O'Brien\\" for event in changes)
    dead = read(stack, prefix, DLQ_TOPIC)
    assert len(dead) == hostile_count
    assert all(isinstance(event, EventDeadLettered) and event.reason for event in dead)
    reasons = " | ".join(event.reason for event in dead)
    for fragment in ("ChangeEventHeader", "not a Salesforce record id", "ChangeType", "encodes to"):
        assert fragment in reasons
    assert read(stack, prefix, "sf.events.New_Lead__e") == []
    # The checkpoint moved past everything, hostile messages included.
    assert ingestor.checkpoints["/data/LeadChangeEvent"].replay_id == 139


@pytest.mark.integration
def test_a_record_the_broker_refuses_does_not_leave_the_appender_stuck(
    stack: Settings, prefix: str
) -> None:
    """Regression: a produce error left the transaction open, so every later append
    failed with "Operation not valid in state InTransaction" until a restart."""
    ingestor = broker_ingestor(stack, prefix)
    ingestor.start()
    (small,) = ingestor.encode_delivery(convert(lead_change(1, Status="ok")))
    huge = OutboundRecord(small.topic, small.key, b"x" * 1_200_000, small.headers)
    with pytest.raises(AppendFailed, match=r"MSG_SIZE_TOO_LARGE|too large"):
        ingestor.appender.append([small, huge], [])
    ingestor.appender.append([small], [])
    assert [event.id for event in read(stack, prefix, "sf.cdc.Lead")] == [
        convert(lead_change(1, Status="ok"))[0].id
    ]


# ---------------------------------------------------------------------------------------
# The HTTP ingress: Outbound Messages (SOAP) and the signed webhook.

OUTBOUND = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <Notification>
    <Id>{notification}</Id>
    <sObject xsi:type="sf:{entity}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{record_id}</sf:Id>
     <sf:StageName>{stage}</sf:StageName>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""


def outbound(
    notification: str = "04l5g000000NOTE1AA",
    entity: str = "Opportunity",
    record_id: str = "0065g00000XYZ12AAA",
    stage: str = "Closed Won",
    org: str = ORG,
) -> str:
    """An Outbound Message of one Opportunity."""
    return OUTBOUND.format(
        org=org, notification=notification, entity=entity, record_id=record_id, stage=stage
    )


ENVELOPE_OPEN = OUTBOUND.split("<soapenv:Body>")[0] + "<soapenv:Body>"
HOSTILE_SOAP: list[bytes] = [
    # Billion laughs.
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>",
    # Quadratic blowup: one large entity referenced many times.
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "'
    + b"a" * 50_000
    + b'">]><q>'
    + b"&a;" * 20_000
    + b"</q>",
    # External entity (XXE).
    b'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    + outbound(stage="&xxe;").split("?>", 1)[1].encode(),
    # External DTD and parameter entities.
    b'<?xml version="1.0"?><!DOCTYPE foo SYSTEM "http://127.0.0.1:1/evil.dtd"><foo/>',
    b'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><foo/>',
    # A DTD alone, even harmless.
    b'<?xml version="1.0"?><!DOCTYPE notifications []>' + outbound().split("?>", 1)[1].encode(),
    # Deep nesting within the size limit.
    (
        ENVELOPE_OPEN + "<a>" * 100_000 + "</a>" * 100_000 + "</soapenv:Body></soapenv:Envelope>"
    ).encode(),
    b"<a>" * 300_000,
    # Wrong namespace, missing parts.
    outbound().replace("http://soap.sforce.com/2005/09/outbound", "urn:evil").encode(),
    outbound().replace("<Id>04l5g000000NOTE1AA</Id>", "").encode(),
    re.sub(r"<Notification>.*</Notification>", "", outbound(), flags=re.S).encode(),
    outbound(record_id="' OR Id != null --").encode(),
    outbound(record_id="").encode(),
    outbound(entity="Lead'; DELETE").encode(),
    outbound(entity="No_Such_Object__c").encode(),  # no topic for it
    outbound(stage="x" * 1_000_000)[:500_000].encode(),  # cut short, unclosed
    outbound(stage="y" * 1_000_000).encode(),  # well formed, but the event is too large
    # Not UTF-8, not XML, nothing.
    b"\xff\xfe\x00<\x00n\x00o\x00t\x00>",
    outbound(stage="caf\u00e9").encode("latin-1"),
    b"",
    b"\x00" * 1000,
    b"{}",
]


@pytest.fixture
async def ingress(stack: Settings, prefix: str) -> AsyncIterator[TestClient]:
    """The real aiohttp ingress app over an ingestor appending to the broker."""
    ingestor = broker_ingestor(stack, prefix)
    ingestor.start()
    client = TestClient(TestServer(Ingress(ingestor, ORG, SECRET).app()))
    await client.start_server()
    yield client
    await client.close()


def outbound_url(token: str = SECRET.decode()) -> str:
    """The Outbound Message endpoint with ``token``."""
    return f"/outbound-messages?token={token}"


@pytest.mark.integration
async def test_hostile_outbound_messages_are_dead_lettered_or_refused_never_5xx(
    stack: Settings, prefix: str, ingress: TestClient
) -> None:
    dead_lettered = 0
    for body in HOSTILE_SOAP:
        response = await ingress.post(outbound_url(), data=body)
        assert response.status < 500, (response.status, body[:120])
        if response.status == 200:
            assert await response.text() == ACK
            dead_lettered += 1
        else:
            assert response.status == 413 and len(body) > MAX_BODY_BYTES
    oversized = await ingress.post(outbound_url(), data=b"<a>" + b"x" * MAX_BODY_BYTES + b"</a>")
    assert oversized.status == 413
    for token in ("", "wrong", "%27%20OR%201%3D1", "%FF%FE", SECRET.decode() + "x"):
        assert (await ingress.post(outbound_url(token), data=outbound())).status == 401
    other_org = outbound(org="00D000000000001AAA")
    assert (await ingress.post(outbound_url(), data=other_org)).status == 403

    # A valid message is still accepted afterwards, and only it reaches the topic.
    accepted = await ingress.post(outbound_url(), data=outbound(stage="O'Brien \\ --"))
    assert accepted.status == 200 and await accepted.text() == ACK
    (event,) = read(stack, prefix, "sf.cdc.Opportunity")
    assert isinstance(event, RecordChanged) and event.fields["StageName"] == "O'Brien \\ --"
    dead = read(stack, prefix, DLQ_TOPIC)
    assert len(dead) == dead_lettered == len(HOSTILE_SOAP)
    assert all(isinstance(d, EventDeadLettered) and d.reason for d in dead)
    reasons = " | ".join(d.reason for d in dead)
    assert "DTD" in reasons or "Entities" in reasons
    assert "root:" not in reasons and all(
        b"root:x:0:0" not in (d.original_value or b"") for d in dead
    )


@st.composite
def soap_bodies(draw: st.DrawFn) -> bytes:
    """A valid Outbound Message with a hostile value, a cut, or inserted bytes."""
    body = outbound(
        notification=draw(st.sampled_from(["04l5g000000NOTE9AA", *HOSTILE_STRINGS[:6]])),
        entity=draw(st.sampled_from(["Opportunity", "Lead", "Widget__c", "1Bad", "a b"])),
        record_id=draw(st.sampled_from(["0065g00000XYZ12AAA", *HOSTILE_STRINGS])),
        stage=draw(st.text(max_size=30).filter(lambda t: "<" not in t and "&" not in t)),
    ).encode("utf-8", "surrogatepass")
    cut = draw(st.integers(min_value=0, max_value=len(body)))
    junk = draw(st.binary(max_size=20))
    return draw(st.sampled_from([body, body[:cut], body[:cut] + junk + body[cut:]]))


@pytest.mark.integration
@settings(settings.get_profile("hostile"), max_examples=100)
@given(body=soap_bodies())
async def test_fuzzed_outbound_messages_never_get_a_5xx(ingress: TestClient, body: bytes) -> None:
    response = await ingress.post(outbound_url(), data=body)
    assert response.status in (200, 403), (response.status, body[:200])
    if response.status == 200:
        assert await response.text() == ACK
    try:
        organization_id, _ = parse_outbound_message(body)
    except ValueError:
        assert response.status == 200  # dead-lettered and acknowledged
    else:
        assert response.status == (200 if organization_id[:15] == ORG[:15] else 403)


def signed(body: bytes) -> dict[str, str]:
    """Headers of a correctly signed webhook delivery."""
    return {SIGNATURE_HEADER: sign(SECRET, body), "Content-Type": "application/json"}


def webhook_payload(delivery: str = "d-1", **change: Any) -> dict[str, Any]:
    """A valid webhook payload of one Lead change (``change`` overrides its keys)."""
    return {
        "organizationId": ORG,
        "deliveryId": delivery,
        "changes": [
            {
                "entity": "Lead",
                "recordId": "00Q5g00000ABCDEAAA",
                "changeType": "UPDATE",
                "commitTimestamp": "2026-11-25T10:00:00Z",
                "fields": {"Status": "Working"},
                **change,
            }
        ],
    }


WEBHOOK_PATHS: list[tuple[Any, ...]] = [
    ("organizationId",),
    ("deliveryId",),
    ("changes",),
    ("changes", 0),
    ("changes", 0, "entity"),
    ("changes", 0, "recordId"),
    ("changes", 0, "changeType"),
    ("changes", 0, "commitTimestamp"),
    ("changes", 0, "fields"),
    ("changes", 0, "fields", "Status"),
]


@st.composite
def webhook_bodies(draw: st.DrawFn) -> bytes:
    """A signed-to-be webhook body: a mutated payload, raw text, or hand-made hostile JSON."""
    kind = draw(st.sampled_from(["mutated", "mutated", "raw", "crafted"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "crafted":
        return draw(
            st.sampled_from(
                [
                    b'{"organizationId": "%s", "deliveryId": "a", "deliveryId": "b", "changes": []}'
                    % ORG.encode(),
                    json.dumps(webhook_payload(fields={"Amount": 1}))
                    .replace("1}", "NaN}")
                    .encode(),
                    json.dumps(webhook_payload(fields={"Amount": 1}))
                    .replace("1}", "Infinity}")
                    .encode(),
                    json.dumps(webhook_payload(fields={"Amount": 1}))
                    .replace("1}", "1e999}")
                    .encode(),
                    json.dumps(webhook_payload(fields={"Amount": 1}))
                    .replace("1}", "9" * 5000 + "}")
                    .encode(),
                    json.dumps(webhook_payload(fields={"Amount": 10**30})).encode(),
                    b"[" * 50_000 + b"]" * 50_000,
                    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                    json.dumps(webhook_payload(fields={"Deep": 1}))
                    .replace("1}", '{"a":' * 500 + "1" + "}" * 500 + "}")
                    .encode(),
                    json.dumps(webhook_payload(fields={"Big": "z" * 1_000_000})).encode(),
                    json.dumps(webhook_payload(entity="Widget__c")).encode(),
                    json.dumps(webhook_payload(commitTimestamp="0001-01-01T00:00:00")).encode(),
                    json.dumps(webhook_payload(recordId="\\ud800" * 18)).encode(),
                    b'{"organizationId": "' + ORG.encode() + b'", "deliveryId": "\\ud800", '
                    b'"changes": [{"entity": "Lead", "recordId": "00Q5g00000ABCDEAAA"}]}',
                ]
            )
        )
    path = draw(st.sampled_from(WEBHOOK_PATHS))
    payload = mutated(
        webhook_payload(draw(st.text(min_size=1, max_size=10))),
        path,
        draw(json_values),
        draw(st.booleans()),
    )
    return json.dumps(payload, allow_nan=True).encode("utf-8", "surrogatepass")


@pytest.mark.integration
@settings(settings.get_profile("hostile"), max_examples=150)
@given(
    body=webhook_bodies(),
    signature=st.one_of(
        st.none(),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
        st.just("sha256=").map(lambda prefix: prefix + "0" * 64),
    ),
)
async def test_fuzzed_webhook_bodies_get_a_4xx_or_202_never_5xx(
    ingress: TestClient, body: bytes, signature: str | None
) -> None:
    if signature is not None and signature != sign(SECRET, body):
        headers = {SIGNATURE_HEADER: signature}
        response = await ingress.post("/webhook", data=body, headers=headers)
        assert response.status == 401
        return
    response = await ingress.post("/webhook", data=body, headers=signed(body))
    assert response.status in (202, 403, 413, 422), (response.status, body[:200])
    if response.status == 202:
        answer = await response.json()
        assert answer["accepted"] >= 1
    if len(body) > MAX_BODY_BYTES:
        assert response.status == 413


@pytest.mark.integration
async def test_hostile_webhook_bodies_are_dead_lettered_and_a_valid_one_still_accepted(
    stack: Settings, prefix: str, ingress: TestClient
) -> None:
    hostile = [
        b'{"organizationId": "%s", "deliveryId": "a", "deliveryId": "b", "changes": []}'
        % ORG.encode(),
        json.dumps(webhook_payload(fields={"Amount": 1})).replace("1}", "NaN}").encode(),
        json.dumps(webhook_payload(fields={"Amount": 1})).replace("1}", "-Infinity}").encode(),
        json.dumps(webhook_payload(fields={"Amount": 1})).replace("1}", "1e999}").encode(),
        json.dumps(webhook_payload(recordId=["00Q5g00000ABCDEAAA"])).encode(),
        json.dumps(webhook_payload(commitTimestamp="yesterday")).encode(),
        json.dumps(webhook_payload(entity="Widget__c")).encode(),  # no topic for it
        json.dumps(webhook_payload(fields={"Big": "z" * 1_000_000})).encode(),  # record > 1 MB
        json.dumps(webhook_payload(recordId="00Q5g00000ABCDE' OR Id != null --")).encode(),
        json.dumps(webhook_payload(fields={"Deep": deep_objects(300)})).encode(),
    ]
    for body in hostile:
        response = await ingress.post("/webhook", data=body, headers=signed(body))
        assert response.status == 422, (response.status, hostile.index(body), body[-120:])
    dead = read(stack, prefix, DLQ_TOPIC)
    assert len(dead) == len(hostile)
    assert all(isinstance(d, EventDeadLettered) and d.reason for d in dead)
    assert all(len(d.original_value or b"") <= 512 * 1024 for d in dead)
    assert any("raw value cut" in d.reason for d in dead)
    assert (await ingress.post("/webhook", data=hostile[-1])).status == 401  # unsigned

    body = json.dumps(webhook_payload("d-valid", fields={"Status": "O'Brien \\ --"})).encode()
    accepted = await ingress.post("/webhook", data=body, headers=signed(body))
    assert accepted.status == 202
    (event,) = read(stack, prefix, "sf.cdc.Lead")
    assert isinstance(event, RecordChanged) and event.fields["Status"] == "O'Brien \\ --"


# ---------------------------------------------------------------------------------------
# SOQL: no value from an event ever changes a query's text.


@settings(settings.get_profile("hostile"))
@given(st.one_of(st.text(max_size=30), st.sampled_from(HOSTILE_STRINGS)))
def test_only_salesforce_ids_and_object_names_pass_the_query_checks(value: str) -> None:
    try:
        assert checked_record_id(value) == value
    except UnsafeQueryValue as exc:
        assert repr(value) in str(exc)
    else:
        assert re.fullmatch(r"[a-zA-Z0-9]{15}|[a-zA-Z0-9]{18}", value)
    try:
        assert checked_object_name(value) == value
    except UnsafeQueryValue:
        pass
    else:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[RunningSimulator]:
    """The org simulator on a background thread."""
    running = start_in_thread(SimConfig(state_dir=tmp_path, port=0))
    yield running
    running.stop()


def bulk_queries(sim: RunningSimulator) -> list[str]:
    """The SOQL text of every Bulk API 2.0 query job the simulator received, in order."""
    jobs = list(sim.state.jobs.values())
    return [str(job.info["query"]) for job in jobs if job.kind == "query"]


class QueryLog:
    """Records the ``q`` parameter of every REST query a simple-salesforce client sends."""

    def __init__(self, client: Salesforce) -> None:
        self.queries: list[str] = []
        self.requests = 0
        session = client.session
        original = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            params = kwargs.get("params")
            if isinstance(params, Mapping) and "q" in params:
                self.queries.append(str(params["q"]))
            return original(method, url, *args, **kwargs)

        session.request = request  # type: ignore[method-assign,assignment]


HOSTILE_VALUES = [v for v in HOSTILE_STRINGS if v and v != "\ud800" and "\x00" not in v]


def create_hostile_leads(sf: Salesforce) -> dict[str, str]:
    """Leads whose LastName is a hostile string; id -> LastName."""
    created = {}
    for value in HOSTILE_VALUES:
        result = cast(Any, sf).Lead.create(
            {"LastName": value, "Company": value, "Status": "Open - Not Contacted"}
        )
        created[str(result["id"])] = value
    return created


@pytest.mark.integration
def test_backfill_queries_are_fixed_whatever_the_records_hold(
    stack: Settings, prefix: str, sim: RunningSimulator
) -> None:
    sf = connect(sim.client_config())
    created = create_hostile_leads(sf)
    fields = [name for name, info in describe_fields(sf, "Lead").items() if info]
    appender = TransactionalAppender(
        stack.kafka_bootstrap, f"tx-{prefix}", prefix + "sfe.ingest.checkpoints"
    )
    codec = Codec(topic_prefix=prefix)
    written = run_backfill(sf, appender, codec, "Lead", topic_prefix=prefix)
    assert written == len(created)
    (query,) = bulk_queries(sim)
    assert query == f"SELECT {', '.join(fields)} FROM Lead"
    events = read(stack, prefix, "sf.cdc.Lead")
    in_org = {record_id: cast(Any, sf).Lead.get(record_id)["LastName"] for record_id in created}
    assert {e.subject: e.fields["LastName"] for e in events} == in_org
    assert sorted(in_org.values()) == sorted(created.values())  # stored as they came
    for name in ("Lead WHERE Id != null", "Lead'", "Lead --", "x'); DELETE FROM Lead; --"):
        with pytest.raises(UnsafeQueryValue):
            run_backfill(sf, appender, codec, name, topic_prefix=prefix)
    assert bulk_queries(sim) == [query]  # nothing else was sent


@pytest.mark.integration
def test_reconcile_queries_name_only_checked_ids_and_described_fields(
    sim: RunningSimulator,
) -> None:
    sf = connect(sim.client_config())
    created = create_hostile_leads(sf)
    ids = sorted(created)
    expectations = [
        RecordExpectation(
            record_id,
            {
                "AI_Reasoning__c": value,
                "AI_Lead_Route__c": "' OR Id != null --",
                "Evil__c FROM Lead WHERE Id != null --": value,
            },
            command_id=f"cmd-{index}",
        )
        for index, (record_id, value) in enumerate(sorted(created.items()))
    ]
    differences, missing, compared = compare(sf, "Lead", expectations)
    assert compared == len(ids) and missing == []
    assert {d.record_id for d in differences} == set(ids)  # the org holds none of the values
    id_list = ", ".join(f"'{record_id}'" for record_id in ids)
    assert bulk_queries(sim) == [
        f"SELECT Id, AI_Lead_Route__c, AI_Reasoning__c FROM Lead WHERE Id IN ({id_list})"
    ]

    for bad_id in ("' OR Id != null --", "00Q000000000001' OR '1'='1", ids[0] + "'", "\\"):
        hostile = [*expectations, RecordExpectation(bad_id, {"AI_Reasoning__c": "x"})]
        with pytest.raises(UnsafeQueryValue, match="not a Salesforce record id"):
            compare(sf, "Lead", hostile)
    with pytest.raises(UnsafeQueryValue, match="not an sObject name"):
        compare(sf, "Lead WHERE Id != null", expectations)
    assert len(bulk_queries(sim)) == 1  # the refused ones were never sent


@pytest.mark.integration
async def test_gap_rereads_query_only_checked_ids(sim: RunningSimulator) -> None:
    sf = connect(sim.client_config())
    created = create_hostile_leads(sf)
    log = QueryLog(sf)
    reader = SalesforceRecordReader(sf)
    ids = sorted(created)[:3]
    found = await reader.read_records("Lead", ids)
    assert {record_id: (row or {}).get("LastName") for record_id, row in found.items()} == {
        record_id: cast(Any, sf).Lead.get(record_id)["LastName"] for record_id in ids
    }
    (query,) = log.queries
    assert query.endswith(" FROM Lead WHERE Id IN ({})".format(", ".join(f"'{i}'" for i in ids)))
    assert query.startswith("SELECT Id, ") and "'" not in query.split(" WHERE ")[0]
    sent = log.requests
    for bad in (["' OR Id != null --"], [ids[0], "x' OR '1'='1"], ["\\"], ["00Q0000000000\n01"]):
        with pytest.raises(UnsafeQueryValue):
            await reader.read_records("Lead", bad)
    with pytest.raises(UnsafeQueryValue):
        await reader.read_records("Lead WHERE Id != null", ids)
    assert log.requests == sent  # nothing was sent for the refused ones
