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

In the self-describing format, events of the latest schema version go through code
generated for their class and schema (:mod:`schema_registry.compiled`) when it can
vouch for the result; anything else (an odd value, an older version, malformed bytes)
takes the reference path below, which gives the same bytes, events and errors.
"""

from __future__ import annotations

import array
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro.const import INT_MAX_VALUE, INT_MIN_VALUE, LONG_MAX_VALUE, LONG_MIN_VALUE
from fastavro.logical_writers import LOGICAL_WRITERS
from fastavro.schema import extract_logical_type, extract_record_type
from fastavro.validation import ValidationError, validate

from schema_registry import catalog, compiled, upcasters
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
    names_version,
    self_describing_headers,
)
from sfe.settings import Settings, SettingsError


@dataclass(frozen=True)
class _Plan:
    """What the codec needs for each value of one topic, looked up once."""

    subject: str
    event_class: type[Event]
    latest: catalog.SchemaVersion | None
    encoder: compiled.Encoder | None
    decoder: compiled.Decoder | None
    subject_header: bytes
    version_header: bytes


@dataclass(frozen=True)
class EncodedValue:
    """A Kafka record value and the headers that go with it."""

    value: bytes
    headers: Headers


def registry_config(settings: Settings) -> dict[str, str] | None:
    """The schema registry client's configuration (URL, credentials, CA), or None without one.

    Raises :class:`~sfe.settings.SettingsError` naming a CA file that does not exist.
    """
    if settings.schema_registry_url is None:
        return None
    config = {"url": settings.schema_registry_url}
    if settings.schema_registry_basic_auth is not None:
        config["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    ca = settings.schema_registry_ca_location
    if ca is not None:
        if not ca.is_file():
            raise SettingsError(f"invalid setting SFE_SCHEMA_REGISTRY_CA_LOCATION: no file at {ca}")
        config["ssl.ca.location"] = str(ca)
    return config


class Codec:
    """Encode and decode the events of every topic in the catalogue."""

    def __init__(
        self, wire: WireFormat | None = None, topic_prefix: str = "", compiled: bool = True
    ) -> None:
        """``compiled=False`` keeps every value on the reference path (for comparisons)."""
        self.wire: WireFormat = wire or SelfDescribingFormat()
        self.topic_prefix = topic_prefix
        self.compiled = compiled
        self._plans: dict[str, _Plan] = {}

    @classmethod
    def from_settings(cls, settings: Settings, topic_prefix: str = "") -> Codec:
        """Confluent wire format when ``SFE_SCHEMA_REGISTRY_URL`` is set, else self-describing."""
        config = registry_config(settings)
        if config is None:
            return cls(SelfDescribingFormat(), topic_prefix)
        return cls(ConfluentFormat(SchemaRegistryClient(config)), topic_prefix)

    def subject_of(self, topic: str) -> str:
        """The catalogue subject of ``topic``'s values (its prefix removed)."""
        if not topic.startswith(self.topic_prefix):
            raise UnknownSubject(f"{topic}-value (expected the prefix {self.topic_prefix!r})")
        subject = catalog.value_subject(topic.removeprefix(self.topic_prefix))
        catalog.event_type(subject)  # raises UnknownSubject for a topic outside the catalogue
        return subject

    def _plan(self, topic: str) -> _Plan:
        """The plan of ``topic``; raises :class:`UnknownSubject` as :meth:`subject_of`."""
        plan = self._plans.get(topic)
        if plan is None:
            subject = self.subject_of(topic)
            event_class = catalog.event_type(subject)
            try:
                latest: catalog.SchemaVersion | None = catalog.schema(subject)
            except UnknownSubject:
                latest = None  # no schema kept: the reference path says so, as ever
            fast = latest is not None and self.compiled and type(self.wire) is SelfDescribingFormat
            plan = self._plans[topic] = _Plan(
                subject,
                event_class,
                latest,
                compiled.encoder(latest, event_class) if fast and latest else None,
                compiled.decoder(latest, event_class) if fast and latest else None,
                subject.encode(),
                str(latest.version if latest else 0).encode(),
            )
        return plan

    def encode(self, topic: str, event: Event) -> EncodedValue:
        """``event`` as a value of ``topic``; :class:`EventNotEncodable` if it does not fit."""
        plan = self._plan(topic)
        subject, expected = plan.subject, plan.event_class
        if type(event) is not expected:
            raise EventNotEncodable(
                f"{topic} holds {expected.type} events, not {type(event).__name__}"
            )
        if plan.encoder is not None:
            # The compiled encoder raises whenever it cannot vouch for the bytes (an
            # odd value, one that does not fit): the reference path below decides.
            try:
                payload = plan.encoder(event)
            except Exception:
                pass
            else:
                return EncodedValue(payload, self_describing_headers(plan.latest))  # type: ignore[arg-type]
        record = to_record(event)
        latest = catalog.schema(subject)
        if not _conforms(latest)(record):
            # The quick check accepts no record fastavro's validation rejects, but may
            # reject one it accepts: fastavro has the last word, and writes the reason.
            try:
                validate(record, latest.parsed, strict=True)
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
            plan = self._plan(topic)
        except UnknownSubject as exc:
            raise UndecodableEvent(topic, str(exc)) from None
        subject = plan.subject
        if (
            plan.decoder is not None
            and type(value) is bytes
            and headers
            and names_version(headers, plan.subject_header, plan.version_header)
        ):
            # The latest version, which the compiled decoder reads; it raises on
            # anything it cannot vouch for, and the reference path below decides.
            try:
                return plan.decoder(value)
            except Exception:
                pass
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


# --- The quick schema check of Codec.encode. ------------------------------------------
#
# ``fastavro.validation.validate(record, schema, strict=True)`` is the contract of
# encode, but it walks the schema for every value and, for every union branch that does
# not match, builds an error with a JSON dump of the value, which costs more than the
# encoding itself. ``_conforms`` compiles the same rules once per schema version into
# closures. Each check only answers True when fastavro's would: a value it is not sure
# of (a subclass, a tuple in a union, a ``-type`` key, any exception) answers False,
# and the encoder then asks fastavro, whose answer stands.

Check = Callable[[Any], bool]

_MISSING = object()
_STRING = frozenset({str})


def _never(datum: Any) -> bool:
    return False


def _is_null(datum: Any) -> bool:
    return datum is None


def _is_boolean(datum: Any) -> bool:
    return datum is True or datum is False


def _is_string(datum: Any) -> bool:
    return isinstance(datum, str)


def _is_bytes(datum: Any) -> bool:
    return isinstance(datum, bytes | bytearray)


def _is_float(datum: Any) -> bool:
    return isinstance(datum, int | float | numbers.Real) and not isinstance(datum, bool)


def _integer_check(low: int, high: int) -> Check:
    def is_integer(datum: Any) -> bool:
        if type(datum) is not int and (
            not isinstance(datum, int | numbers.Integral) or isinstance(datum, bool)
        ):
            return False
        number: Any = datum
        return bool(low <= number <= high)

    return is_integer


#: Exact types whose values always pass the check of a primitive schema type.
_ACCEPTED: dict[str, frozenset[type]] = {
    "null": frozenset({type(None)}),
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
    "bytes": frozenset({bytes, bytearray}),
    "float": frozenset({float, int}),
    "double": frozenset({float, int}),
}

_PRIMITIVE_CHECKS: dict[str, Check] = {
    "null": _is_null,
    "boolean": _is_boolean,
    "string": _is_string,
    "bytes": _is_bytes,
    "int": _integer_check(INT_MIN_VALUE, INT_MAX_VALUE),
    "long": _integer_check(LONG_MIN_VALUE, LONG_MAX_VALUE),
    "float": _is_float,
    "double": _is_float,
}


class _Compiler:
    """Compiles the nodes of one parsed schema into checks."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.compiled: dict[str, Check] = {}

    def check(self, node: Any) -> tuple[Check, frozenset[type]]:
        """The check of ``node``, and the exact types it accepts without calling it."""
        kind = extract_record_type(node)
        logical = extract_logical_type(node)
        prepare = LOGICAL_WRITERS.get(logical) if logical else None
        check, accepted = self._base(node, kind)
        if prepare is None:
            return check, accepted
        base = check

        def prepared(datum: Any) -> bool:
            return base(prepare(datum, node))

        return prepared, frozenset()

    def _base(self, node: Any, kind: Any) -> tuple[Check, frozenset[type]]:
        if not isinstance(kind, str):
            return _never, frozenset()
        if kind in _PRIMITIVE_CHECKS:
            return _PRIMITIVE_CHECKS[kind], _ACCEPTED.get(kind, frozenset())
        if kind == "fixed":
            return self._fixed(node), frozenset()
        if kind == "enum":
            return self._enum(node), frozenset()
        if kind == "array":
            return self._array(node), frozenset()
        if kind == "map":
            return self._map(node), frozenset()
        if kind in ("union", "error_union"):
            return self._union(node)
        if kind in ("record", "error", "request"):
            return self._record(node), frozenset()
        if kind in self.named:
            return self._reference(kind), frozenset()
        return _never, frozenset()  # fastavro will say what it is (UnknownType)

    def _fixed(self, node: Any) -> Check:
        size = node["size"]

        def is_fixed(datum: Any) -> bool:
            return isinstance(datum, bytes) and len(datum) == size

        return is_fixed

    def _enum(self, node: Any) -> Check:
        symbols = node["symbols"]

        def is_symbol(datum: Any) -> bool:
            return datum in symbols

        return is_symbol

    def _array(self, node: Any) -> Check:
        check, accepted = self.check(node["items"])

        def is_array(datum: Any) -> bool:
            if type(datum) is not list and (
                not isinstance(datum, Sequence | array.array) or isinstance(datum, str)
            ):
                return False
            if accepted.issuperset(map(type, datum)):
                return True  # the common case, decided without a call per item
            return all(type(item) in accepted or check(item) for item in datum)

        return is_array

    def _map(self, node: Any) -> Check:
        check, accepted = self.check(node["values"])

        def is_map(datum: Any) -> bool:
            if type(datum) is not dict and not isinstance(datum, Mapping):
                return False
            if not _STRING.issuperset(map(type, datum)) and not all(
                isinstance(key, str) for key in datum
            ):
                return False
            values = datum.values()
            if accepted.issuperset(map(type, values)):
                return True  # the common case, decided without a call per value
            return all(type(value) in accepted or check(value) for value in values)

        return is_map

    def _union(self, node: Any) -> tuple[Check, frozenset[type]]:
        branches = [self.check(branch) for branch in node]
        checks = tuple(check for check, _accepted in branches)
        accepted = frozenset().union(*(accepted for _check, accepted in branches))

        def is_branch(datum: Any) -> bool:
            if isinstance(datum, tuple):
                return False  # fastavro's tuple notation (name, value): let it decide
            return any(check(datum) for check in checks)

        return is_branch, accepted

    def _record(self, node: Any) -> Check:
        # A field without a value takes its default; strict, one without a default fails.
        fields = tuple(
            (spec["name"], spec.get("default", _MISSING), *self.check(spec["type"]))
            for spec in node["fields"]
        )
        missing = _MISSING

        def is_record(datum: Any) -> bool:
            if type(datum) is not dict and not isinstance(datum, Mapping):
                return False
            if "-type" in datum:
                return False  # fastavro compares it with the record's full name
            get = datum.get
            for name, default, check, accepted in fields:
                value = get(name, default)
                if type(value) not in accepted and (value is missing or not check(value)):
                    return False
            return True

        return is_record

    def _reference(self, name: str) -> Check:
        # Compiled on first use, so that a recursive schema compiles.
        def is_named(datum: Any) -> bool:
            if name not in self.compiled:
                self.compiled[name] = self.check(self.named[name])[0]
            return self.compiled[name](datum)

        return is_named


@cache
def _conforms(version: catalog.SchemaVersion) -> Check:
    """Whether a record surely passes ``validate(record, version.parsed, strict=True)``."""
    parsed = version.parsed
    try:
        check, _accepted = _Compiler(parsed.get("__named_schemas", {})).check(parsed)
    except Exception:
        return _never  # a schema shape this compiler does not know: fastavro decides

    def conforms(record: Any) -> bool:
        try:
            return check(record)
        except Exception:
            return False  # whatever it is, fastavro's validation will tell

    return conforms
