"""The two wire formats of an event value: Confluent's, and the self-describing fallback.

**Confluent** (when ``SFE_SCHEMA_REGISTRY_URL`` is set): the value is a magic byte
``0``, the 4-byte big-endian id the registry gave the writer schema, then the Avro
binary encoding. ``confluent_kafka.schema_registry``'s AvroSerializer registers the
schema under ``<topic>-value`` (TopicNameStrategy) and its AvroDeserializer fetches
the writer schema by id.

**Self-describing** (no registry): the value is the bare Avro binary encoding of the
record, and two Kafka headers name its schema in this repository's catalogue:

- ``sfe-schema-subject``: the subject, e.g. ``sf.cdc.Lead-value`` (UTF-8)
- ``sfe-schema-version``: the version, e.g. ``1`` (ASCII decimal)

plus ``content-type: application/vnd.sfe.avro``. A reader needs the repository's
schemas (or the same ``.avsc`` files) to decode it. Both formats hand the codec the
record as written, so upcasting works the same way for both.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import schemaless_reader, schemaless_writer

from schema_registry import catalog

Record = dict[str, Any]
#: Headers the codec writes.
Headers = list[tuple[str, bytes]]
#: Headers as Kafka clients return them (a value may be text, bytes or absent).
ReadHeaders = Sequence[tuple[str, str | bytes | None]]

SUBJECT_HEADER = "sfe-schema-subject"
VERSION_HEADER = "sfe-schema-version"
CONTENT_TYPE_HEADER = "content-type"
CONTENT_TYPE = b"application/vnd.sfe.avro"
CONFLUENT_MAGIC_BYTE = 0


class WireError(Exception):
    """The bytes do not follow the wire format; the message is the reason."""


class WireFormat(Protocol):
    """How a record of a subject's latest schema becomes a value and headers, and back."""

    def write(self, topic: str, subject: str, record: Record) -> tuple[bytes, Headers]:
        """Encode ``record`` (latest version of ``subject``) for ``topic``."""
        ...

    def read(self, topic: str, subject: str, value: bytes, headers: ReadHeaders) -> Record:
        """Decode ``value`` with the schema it was written with; raise :class:`WireError`."""
        ...


@cache
def _self_describing_headers(version: catalog.SchemaVersion) -> tuple[tuple[str, bytes], ...]:
    """The headers naming ``version``, encoded once per schema version."""
    return (
        (SUBJECT_HEADER, version.subject.encode()),
        (VERSION_HEADER, str(version.version).encode()),
        (CONTENT_TYPE_HEADER, CONTENT_TYPE),
    )


def self_describing_headers(version: catalog.SchemaVersion) -> Headers:
    """The headers naming ``version`` (a new list, which the caller may change)."""
    return list(_self_describing_headers(version))


def names_version(headers: ReadHeaders, subject: bytes, version: bytes) -> bool:
    """Whether ``headers`` name exactly ``subject`` and ``version`` (bytes as written).

    As :meth:`SelfDescribingFormat.read` reads them: a header without a value does not
    count, and of several with the same key the last one does.
    """
    found_subject: str | bytes | None = None
    found_version: str | bytes | None = None
    try:
        for key, raw in headers:
            if raw is None:
                continue
            if key == SUBJECT_HEADER:
                found_subject = raw
            elif key == VERSION_HEADER:
                found_version = raw
        if isinstance(found_subject, str):
            found_subject = found_subject.encode()
        if isinstance(found_version, str):
            found_version = found_version.encode()
    # Odd headers (not pairs, text that is not UTF-8): read() says what is wrong.
    except Exception:
        return False
    return found_subject == subject and found_version == version


class SelfDescribingFormat:
    """Bare Avro binary; subject and version travel in the Kafka headers."""

    def write(self, topic: str, subject: str, record: Record) -> tuple[bytes, Headers]:
        """Encode with the latest version of ``subject`` and name it in the headers."""
        latest = catalog.schema(subject)
        buffer = io.BytesIO()
        schemaless_writer(buffer, latest.parsed, record)
        return buffer.getvalue(), self_describing_headers(latest)

    def read(self, topic: str, subject: str, value: bytes, headers: ReadHeaders) -> Record:
        """Decode with the version the headers name; every byte must be consumed."""
        found = {
            key: raw.encode() if isinstance(raw, str) else raw
            for key, raw in headers or ()
            if raw is not None
        }
        if SUBJECT_HEADER not in found or VERSION_HEADER not in found:
            hint = " (it looks Confluent-framed: is a schema registry URL missing?)"
            framed = value[:1] == bytes([CONFLUENT_MAGIC_BYTE]) and len(value) > 5
            raise WireError(
                f"no {SUBJECT_HEADER}/{VERSION_HEADER} headers" + (hint if framed else "")
            )
        written_subject = found[SUBJECT_HEADER].decode("utf-8", "replace")
        if written_subject != subject:
            raise WireError(
                f"written for subject {written_subject!r}, this topic holds {subject!r}"
            )
        raw_version = found[VERSION_HEADER].decode("ascii", "replace")
        if not raw_version.isdigit():
            raise WireError(f"{VERSION_HEADER} header {raw_version!r} is not a version number")
        kept = catalog.versions(subject)
        version = int(raw_version)
        if not 1 <= version <= len(kept):
            raise WireError(f"{subject} has no schema version {version} (latest is {len(kept)})")
        buffer = io.BytesIO(value)
        record = schemaless_reader(buffer, kept[version - 1].parsed)
        if not isinstance(record, dict):
            raise WireError(f"{subject} v{version} is not a record schema")
        if buffer.tell() != len(value):
            raise WireError(
                f"{len(value) - buffer.tell()} bytes left after the {subject} v{version} record"
            )
        if record.get("schema_version") != version:
            raise WireError(
                f"record says schema version {record.get('schema_version')!r}, header says {version}"
            )
        return record


class ConfluentFormat:
    """Confluent framing through a schema registry: magic byte, schema id, Avro binary."""

    def __init__(self, client: SchemaRegistryClient, auto_register: bool = True) -> None:
        self._client = client
        self._auto_register = auto_register
        self._serializers: dict[str, AvroSerializer] = {}
        self._deserializer = AvroDeserializer(client)

    def _serializer(self, subject: str) -> AvroSerializer:
        if subject not in self._serializers:
            self._serializers[subject] = AvroSerializer(
                self._client,
                catalog.schema(subject).text,
                conf={"auto.register.schemas": self._auto_register},
            )
        return self._serializers[subject]

    def write(self, topic: str, subject: str, record: Record) -> tuple[bytes, Headers]:
        """Encode with the latest version of ``subject``, registered under ``<topic>-value``."""
        context = SerializationContext(topic, MessageField.VALUE)
        value = self._serializer(subject)(record, context)
        if value is None:
            raise ValueError(f"the serializer of {subject} returned no bytes")
        return value, []

    def read(self, topic: str, subject: str, value: bytes, headers: ReadHeaders) -> Record:
        """Decode with the writer schema the registry holds under the value's schema id."""
        if value[:1] != bytes([CONFLUENT_MAGIC_BYTE]) or len(value) < 6:
            raise WireError("not Confluent-framed (magic byte 0 and a 4-byte schema id)")
        context = SerializationContext(topic, MessageField.VALUE)
        try:
            record = self._deserializer(value, context)
        # The deserializer reports bad input with many exception types (registry
        # lookups, framing, Avro decoding); every one of them means "undecodable".
        except Exception as exc:
            schema_id = int.from_bytes(value[1:5], "big")
            raise WireError(f"schema id {schema_id}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(record, dict):
            raise WireError(
                f"the writer schema is not a record schema (got {type(record).__name__})"
            )
        return record
