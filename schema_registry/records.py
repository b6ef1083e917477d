"""Conversion between domain events (frozen dataclasses) and Avro records (plain dicts).

The conversion is driven by the dataclasses' type hints, so a new event type needs no
hand-written mapping: nested dataclasses become nested records, ``StrEnum`` members
become enum symbols, tuples become arrays and mappings become maps. Dates, datetimes
and bytes pass through (fastavro handles their logical types). The envelope's
``type`` and ``schema_version`` come from the class and are checked on the way back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import Any, TypeVar

from schema_registry.events.envelope import Event

E = TypeVar("E", bound=Event)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _to_avro(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _to_avro(value, members[0]) if len(members) == 1 else value
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return [_to_avro(element, item) for element in value]
    if origin is Mapping:
        (_key, item) = typing.get_args(hint)
        return {key: _to_avro(element, item) for key, element in value.items()}
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            spec.name: _to_avro(getattr(value, spec.name), _hints(type(value))[spec.name])
            for spec in dataclasses.fields(value)
        }
    return value


def _from_avro(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_avro(value, members[0]) if len(members) == 1 else value
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return tuple(_from_avro(element, item) for element in value)
    if origin is Mapping:
        (_key, item) = typing.get_args(hint)
        return {key: _from_avro(element, item) for key, element in value.items()}
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        return hint(
            **{
                spec.name: _from_avro(value[spec.name], hints[spec.name])
                for spec in dataclasses.fields(hint)
            }
        )
    return value


def to_record(event: Event) -> dict[str, Any]:
    """The Avro record of ``event``: its fields plus the envelope's ``type`` and version."""
    record: dict[str, Any] = _to_avro(event, type(event))
    record["type"] = event.type
    record["schema_version"] = event.schema_version
    return record


def from_record(cls: type[E], record: Mapping[str, Any]) -> E:
    """Build a ``cls`` from a record of its current schema version.

    Raises ``ValueError`` when the record's ``type`` or ``schema_version`` is not the
    class's, and ``KeyError``/``TypeError``/``ValueError`` when its fields do not fit.
    """
    if record.get("type") != cls.type:
        raise ValueError(f"record of type {record.get('type')!r} where {cls.type} was expected")
    if record.get("schema_version") != cls.schema_version:
        raise ValueError(
            f"record of schema version {record.get('schema_version')!r}, "
            f"{cls.type} is version {cls.schema_version}"
        )
    event: E = _from_avro(dict(record), cls)
    return event
