"""Conversion between domain events (frozen dataclasses) and Avro records (plain dicts).

The conversion is driven by the dataclasses' type hints, so a new event type needs no
hand-written mapping: nested dataclasses become nested records, ``StrEnum`` members
become enum symbols, tuples become arrays and mappings become maps. Dates, datetimes
and bytes pass through (fastavro handles their logical types). The envelope's
``type`` and ``schema_version`` come from the class and are checked on the way back.

The type hints are read once per class: the first conversion of a class compiles a
converter (closures specialised to its fields) that later conversions reuse, so the
per-event cost does not include ``typing`` introspection. The compiled converters do
exactly what :func:`_to_avro` and :func:`_from_avro`, the generic hint walkers, do for
every value; the walkers remain the reference and handle any hint shape the compiler
does not specialise.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar

from schema_registry.events.envelope import Event

E = TypeVar("E", bound=Event)

#: Converts one (non-``None``) value; ``None`` is always converted to ``None`` by the caller.
Converter = Callable[[Any], Any]

#: Types whose values convert to themselves: neither an ``Enum`` nor a dataclass can
#: have one of these exact types, so the generic walker would return them unchanged.
_PLAIN: frozenset[type] = frozenset(
    {str, int, float, bool, type(None), bytes, bytearray, datetime, date}
)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(origin: Any) -> bool:
    return origin is types.UnionType or origin is typing.Union


# --- The generic walkers: the reference behaviour, one hint lookup per value. ---------


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


# --- Compiled converters: the same rules, resolved once per hint. ---------------------
#
# A compiled to-Avro converter is either ``None`` (a *leaf*: the hint adds no structure,
# the value's own type decides, as in the generic walker), ``_identity`` (a union of
# several types: values pass unchanged) or a function of a non-``None`` value.


def _identity(value: Any) -> Any:
    return value


def _copy_mapping(value: Any) -> Any:
    if type(value) is dict:
        return dict(value)  # the same entries, copied at C speed
    return {key: element for key, element in value.items()}


def _leaf_to_avro(value: Any) -> Any:
    """What the generic walker does with a value whose hint adds no structure."""
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_to_avro(type(value))(value)
    return value


def _compile_to_avro(hint: Any) -> Converter | None:
    origin = typing.get_origin(hint)
    if _is_union(origin):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _compile_to_avro(members[0]) if len(members) == 1 else _identity
    if origin is tuple or origin is Mapping:
        arguments = typing.get_args(hint)
        if len(arguments) != 2:
            # A shape the walker rejects per value: keep its behaviour (and its error).
            return lambda value: _to_avro(value, hint)
        if origin is tuple:
            return _tuple_to_avro(_compile_to_avro(arguments[0]))  # tuple[item, ...]
        return _mapping_to_avro(_compile_to_avro(arguments[1]))  # Mapping[key, item]
    return None


def _tuple_to_avro(item: Converter | None) -> Converter:
    if item is _identity:
        return list
    if item is None:
        plain, leaf = _PLAIN, _leaf_to_avro

        def leaves(value: Any) -> Any:
            return [element if type(element) in plain else leaf(element) for element in value]

        return leaves
    convert = item

    def elements(value: Any) -> Any:
        return [None if element is None else convert(element) for element in value]

    return elements


def _mapping_to_avro(item: Converter | None) -> Converter:
    if item is _identity:
        return _copy_mapping
    if item is None:
        plain, leaf = _PLAIN, _leaf_to_avro

        def leaves(value: Any) -> Any:
            return {
                key: element if type(element) in plain else leaf(element)
                for key, element in value.items()
            }

        return leaves
    convert = item

    def entries(value: Any) -> Any:
        return {
            key: None if element is None else convert(element) for key, element in value.items()
        }

    return entries


#: Compiled converters by class, built on first use (a race only builds one twice).
_TO_AVRO: dict[type, Converter] = {}
_FROM_AVRO: dict[type, Converter] = {}


def _dataclass_to_avro(cls: type) -> Converter:
    """The converter of instances of the dataclass ``cls`` to Avro records."""
    convert = _TO_AVRO.get(cls)
    if convert is None:
        convert = _TO_AVRO[cls] = _compile_dataclass_to_avro(cls)
    return convert


def _dataclass_from_avro(cls: type) -> Converter:
    """The builder of ``cls`` instances from (Avro) mappings of its fields."""
    build = _FROM_AVRO.get(cls)
    if build is None:
        build = _FROM_AVRO[cls] = _compile_dataclass_from_avro(cls)
    return build


def _compile_dataclass_to_avro(cls: type) -> Converter:
    hints = _hints(cls)
    plan = tuple(
        (spec.name, _compile_to_avro(hints[spec.name])) for spec in dataclasses.fields(cls)
    )
    plain, leaf = _PLAIN, _leaf_to_avro

    def convert(instance: Any) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for name, field_converter in plan:
            value = getattr(instance, name)
            if field_converter is None:
                if type(value) not in plain:
                    value = leaf(value)
            elif value is not None:
                value = field_converter(value)
            record[name] = value
        return record

    return convert


def _compile_from_avro(hint: Any) -> Converter | None:
    """The converter of a (non-``None``) Avro value of ``hint``; ``None`` when unchanged."""
    origin = typing.get_origin(hint)
    if _is_union(origin):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _compile_from_avro(members[0]) if len(members) == 1 else None
    if origin is tuple or origin is Mapping:
        arguments = typing.get_args(hint)
        if len(arguments) != 2:
            return lambda value: _from_avro(value, hint)
        if origin is tuple:
            return _tuple_from_avro(_compile_from_avro(arguments[0]))
        return _mapping_from_avro(_compile_from_avro(arguments[1]))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        nested = hint
        # Looked up on use, so that a dataclass may (indirectly) contain itself.
        return lambda value: _dataclass_from_avro(nested)(value)
    return None


def _tuple_from_avro(item: Converter | None) -> Converter:
    if item is None:
        return tuple
    convert = item

    def elements(value: Any) -> Any:
        return tuple(None if element is None else convert(element) for element in value)

    return elements


def _mapping_from_avro(item: Converter | None) -> Converter:
    if item is None:
        return _copy_mapping
    convert = item

    def entries(value: Any) -> Any:
        return {
            key: None if element is None else convert(element) for key, element in value.items()
        }

    return entries


def _compile_dataclass_from_avro(cls: type) -> Converter:
    hints = _hints(cls)
    plan = tuple(
        (spec.name, _compile_from_avro(hints[spec.name])) for spec in dataclasses.fields(cls)
    )

    def build(record: Any) -> Any:
        arguments: dict[str, Any] = {}
        for name, field_converter in plan:
            value = record[name]
            if field_converter is not None and value is not None:
                value = field_converter(value)
            arguments[name] = value
        return cls(**arguments)

    return build


def to_record(event: Event) -> dict[str, Any]:
    """The Avro record of ``event``: its fields plus the envelope's ``type`` and version."""
    record: dict[str, Any] = _leaf_to_avro(event)
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
    event: E = _dataclass_from_avro(cls)(record if type(record) is dict else dict(record))
    return event
