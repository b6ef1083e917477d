"""The one place where domain events become Kafka values and values become events.

``Codec.encode(topic, event)`` turns an event into a value and headers in the wire
format of the deployment (Confluent's when a schema registry URL is configured, the
self-describing fallback otherwise; see :mod:`schema_registry.wire`).
``Codec.decode(topic, value, headers)`` reads a value with the schema it was written
with, upcasts it to the current version and returns the event. Whatever is wrong
with the input, decoding raises :class:`UndecodableEvent` with the reason, which
the caller sends to a dead-letter topic with the raw bytes.

Topics may carry a deployment prefix (``staging.sf.cdc.Lead``); the codec strips it
to find the subject of the topic in the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro.validation import ValidationError, validate

from schema_registry import catalog, upcasters
from schema_registry.errors import EventNotEncodable, UndecodableEvent, UnknownSubject
from schema_registry.events import Event
from schema_registry.records import from_record, to_record
from schema_registry.wire import (
    ConfluentFormat,
    Headers,
    ReadHeaders,
    SelfDescribingFormat,
    WireError,
    WireFormat,
)
from sfe.settings import Settings


@dataclass(frozen=True)
class EncodedValue:
    """A Kafka record value and the headers that go with it."""

    value: bytes
    headers: Headers


class Codec:
    """Encode and decode the events of every topic in the catalogue."""

    def __init__(self, wire: WireFormat | None = None, topic_prefix: str = "") -> None:
        self.wire: WireFormat = wire or SelfDescribingFormat()
        self.topic_prefix = topic_prefix

    @classmethod
    def from_settings(cls, settings: Settings, topic_prefix: str = "") -> Codec:
        """Confluent wire format when ``SFE_SCHEMA_REGISTRY_URL`` is set, else self-describing."""
        if settings.schema_registry_url is None:
            return cls(SelfDescribingFormat(), topic_prefix)
        client = SchemaRegistryClient({"url": settings.schema_registry_url})
        return cls(ConfluentFormat(client), topic_prefix)

    def subject_of(self, topic: str) -> str:
        """The catalogue subject of ``topic``'s values (its prefix removed)."""
        if not topic.startswith(self.topic_prefix):
            raise UnknownSubject(f"{topic}-value (expected the prefix {self.topic_prefix!r})")
        subject = catalog.value_subject(topic.removeprefix(self.topic_prefix))
        catalog.event_type(subject)  # raises UnknownSubject for a topic outside the catalogue
        return subject

    def encode(self, topic: str, event: Event) -> EncodedValue:
        """``event`` as a value of ``topic``; :class:`EventNotEncodable` if it does not fit."""
        subject = self.subject_of(topic)
        expected = catalog.event_type(subject)
        if type(event) is not expected:
            raise EventNotEncodable(
                f"{topic} holds {expected.type} events, not {type(event).__name__}"
            )
        record = to_record(event)
        try:
            validate(record, catalog.schema(subject).parsed, strict=True)
        except ValidationError as exc:
            raise EventNotEncodable(
                f"{event.type} {event.id} does not fit {subject}: {exc}"
            ) from None
        value, headers = self.wire.write(topic, subject, record)
        return EncodedValue(value, headers)

    def decode(self, topic: str, value: bytes | None, headers: ReadHeaders | None = None) -> Event:
        """The event in ``value``, upcast to the current schema version.

        Raises :class:`UndecodableEvent` (and nothing else) when the topic is not in
        the catalogue, the value is empty, the bytes do not follow the wire format or
        the schema, or the record cannot be upcast to the current event class.
        """
        if value is None:
            raise UndecodableEvent(topic, "the record has no value (a tombstone)")
        try:
            subject = self.subject_of(topic)
        except UnknownSubject as exc:
            raise UndecodableEvent(topic, str(exc)) from None
        try:
            record = self.wire.read(topic, subject, value, headers or [])
        except WireError as exc:
            raise UndecodableEvent(topic, str(exc)) from None
        # Bytes that pass the framing can still be garbage to the Avro reader, which
        # stops at whatever it meets (EOFError, UnicodeDecodeError, IndexError, ...).
        # Each means "undecodable", so this boundary translates all of them.
        except Exception as exc:
            raise UndecodableEvent(
                topic, f"not Avro of {subject}: {type(exc).__name__}: {exc}"
            ) from None
        event_class = catalog.event_type(subject)
        # Upcasters and event classes reject a record that does not fit with ValueError,
        # KeyError or TypeError, schema resolution with fastavro's errors: same boundary.
        try:
            if record.get("type") != event_class.type:
                raise ValueError(
                    f"type {record.get('type')!r} where {event_class.type} was expected"
                )
            return from_record(event_class, upcasters.upcast(subject, record))
        except Exception as exc:
            raise UndecodableEvent(topic, f"cannot read as {event_class.type}: {exc}") from None
