"""Avro encoders and decoders generated once per schema version and event class.

The codec's reference path turns an event into a record (:func:`records.to_record`),
checks it against the schema, writes it with fastavro, and reads bytes back with
fastavro before building the event (:func:`records.from_record`). Each step walks the
schema or the type hints again for every value. :func:`encoder` and :func:`decoder`
generate, for one schema version and one event class, Python source that does all of
it in one pass: attribute reads, type checks and Avro bytes on the way out, Avro bytes
and the dataclass constructors on the way in.

They only answer when they can vouch for the answer; then it is byte for byte (and
value for value) what the reference path gives. Otherwise they raise (any exception;
:class:`Unsure` when nothing else went wrong) and the caller runs the reference path,
whose result or error stands:

- the encoder accepts only values of exactly the Python type the reference path
  passes through unchanged and fastavro's strict validation accepts (``str`` for a
  string, an ``int`` within range for an ``int`` or ``long``, the hinted ``Enum`` or a
  symbol for an enum, the hinted dataclass for a record, ``dict`` with ``str`` keys for
  a map, ...), and picks union branches as fastavro's writer does;
- the decoder accepts only the canonical encoding of in-range data (no negative block
  counts, no boolean byte but 0 or 1, no varint beyond 64 bits, no length past the end,
  no trailing bytes) of the latest schema version, with the event's own ``type`` and
  ``schema_version``: fastavro reads such bytes exactly so.

A schema or a class whose shape the generator does not know gets no compiled code
(``None``), and the reference path handles every value of it.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import struct
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

from fastavro.logical_writers import LOGICAL_WRITERS
from fastavro.read import LOGICAL_READERS

from schema_registry import catalog
from schema_registry.events import Event

#: ``Event -> Avro bytes`` of one class with one schema version.
Encoder = Callable[[Any], bytes]
#: ``Avro bytes -> Event`` of one class with one schema version.
Decoder = Callable[[bytes], Any]


class Unsure(Exception):
    """The compiled code cannot vouch for this value or these bytes."""


class _CannotCompile(Exception):
    """A schema or hint shape the generator does not handle."""


_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "double", "bytes", "string"})
_SUPPORTED_LOGICAL = {"long-timestamp-millis": datetime, "int-date": date}
_TABLE_SIZE = 2048
#: The conversions (see :class:`_Conv`) the generators follow for each Avro type.
_ACCEPTED_CONVERSIONS = {
    "array": ("list", "leaf", "ident"),
    "map": ("dict", "leaf", "ident"),
    "record": ("leaf", "ident"),
    "null": ("leaf", "ident", "list", "dict"),  # None is never converted
}


#: Each byte value as a one-byte ``bytes``.
_BYTES: tuple[bytes, ...] = tuple(bytes((n,)) for n in range(256))


def _uvarint(number: int) -> bytes:
    """An unsigned number, seven bits a byte, low bits first (Avro's varint)."""
    if number < 0x80:
        return _BYTES[number]
    if number < 1 << 14:
        return bytes(((number & 0x7F) | 0x80, number >> 7))
    if number < 1 << 21:
        return bytes(((number & 0x7F) | 0x80, ((number >> 7) & 0x7F) | 0x80, number >> 14))
    if number < 1 << 28:
        return bytes(
            (
                (number & 0x7F) | 0x80,
                ((number >> 7) & 0x7F) | 0x80,
                ((number >> 14) & 0x7F) | 0x80,
                number >> 21,
            )
        )
    if number < 1 << 35:
        return bytes(
            (
                (number & 0x7F) | 0x80,
                ((number >> 7) & 0x7F) | 0x80,
                ((number >> 14) & 0x7F) | 0x80,
                ((number >> 21) & 0x7F) | 0x80,
                number >> 28,
            )
        )
    if number < 1 << 42:
        return bytes(
            (
                (number & 0x7F) | 0x80,
                ((number >> 7) & 0x7F) | 0x80,
                ((number >> 14) & 0x7F) | 0x80,
                ((number >> 21) & 0x7F) | 0x80,
                ((number >> 28) & 0x7F) | 0x80,
                number >> 35,
            )
        )
    if number < 1 << 49:
        return bytes(
            (
                (number & 0x7F) | 0x80,
                ((number >> 7) & 0x7F) | 0x80,
                ((number >> 14) & 0x7F) | 0x80,
                ((number >> 21) & 0x7F) | 0x80,
                ((number >> 28) & 0x7F) | 0x80,
                ((number >> 35) & 0x7F) | 0x80,
                number >> 42,
            )
        )
    return _uvarint_loop(number)


def _uvarint_loop(number: int) -> bytes:
    """:func:`_uvarint`, one byte at a time (the reference, and for long numbers)."""
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _zigzag(number: int) -> bytes:
    """A signed 64-bit number as Avro writes an ``int`` or ``long``."""
    return _uvarint((number << 1) ^ (number >> 63))


#: The encoded length (or count) ``n`` for ``n < _TABLE_SIZE``.
_LENGTHS: tuple[bytes, ...] = tuple(_zigzag(n) for n in range(_TABLE_SIZE))


def _length(number: int) -> bytes:
    """A length or block count as Avro writes it."""
    return _LENGTHS[number] if number < _TABLE_SIZE else _zigzag(number)


def _read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    """A zig-zag varint at ``position`` and the position after it (unrolled).

    Refuses (:class:`Unsure`) a varint of more than ten bytes or beyond 64 bits, which
    fastavro truncates; an ``IndexError`` past the end.
    """
    byte = buffer[position]
    number = byte & 0x7F
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 1
    byte = buffer[position + 1]
    number |= (byte & 0x7F) << 7
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 2
    byte = buffer[position + 2]
    number |= (byte & 0x7F) << 14
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 3
    byte = buffer[position + 3]
    number |= (byte & 0x7F) << 21
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 4
    byte = buffer[position + 4]
    number |= (byte & 0x7F) << 28
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 5
    byte = buffer[position + 5]
    number |= (byte & 0x7F) << 35
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 6
    byte = buffer[position + 6]
    number |= (byte & 0x7F) << 42
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 7
    byte = buffer[position + 7]
    number |= (byte & 0x7F) << 49
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 8
    byte = buffer[position + 8]
    number |= (byte & 0x7F) << 56
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 9
    byte = buffer[position + 9]
    number |= (byte & 0x7F) << 63
    if byte >= 0x80 or number >> 64:
        raise Unsure
    return (number >> 1) ^ -(number & 1), position + 10


def _read_varint_loop(buffer: bytes, position: int) -> tuple[int, int]:
    """:func:`_read_varint`, one byte at a time (the reference of the tests).

    Refuses (:class:`Unsure`) a varint of more than ten bytes or beyond 64 bits, which
    fastavro truncates; an ``IndexError`` past the end.
    """
    number = 0
    shift = 0
    while True:
        byte = buffer[position]
        position += 1
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Unsure
    if number >> 64:
        raise Unsure
    return (number >> 1) ^ -(number & 1), position


def _read_size(buffer: bytes, position: int) -> tuple[int, int]:
    """A length or a block count (never negative here) and the position after it."""
    size, position = _read_varint(buffer, position)
    if size < 0:
        raise Unsure  # a negative block count (a block with its byte size): fastavro's
    return size, position


# --- What the reference path does with a type hint. ------------------------------------


@dataclasses.dataclass(frozen=True)
class _Conv:
    """How ``records`` converts a value of a hint (``kind`` as below), resolved once.

    ``leaf``: passed through if plain, an Enum becomes its value, a dataclass a dict;
    ``ident``: passed through unchanged (a union of several types); ``list``/``dict``:
    a ``tuple[X, ...]``/``Mapping[K, X]`` whose elements convert by ``item``.
    """

    kind: str
    hint: Any = None
    item: _Conv | None = None


_IDENT = _Conv("ident")


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``hint`` without ``| None``, and whether it was a union of several other types."""
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(members) != 1:
            return hint, True
        return _unwrap(members[0])
    return hint, False


def _conv(hint: Any) -> _Conv:
    """How ``records`` converts values of ``hint`` (as its compiled converters do)."""
    hint, several = _unwrap(hint)
    if several:
        return _IDENT
    origin = typing.get_origin(hint)
    if origin is tuple or origin is Mapping:
        arguments = typing.get_args(hint)
        if len(arguments) != 2 or (origin is tuple and arguments[1] is not Ellipsis):
            raise _CannotCompile(f"hint {hint!r}")
        if origin is tuple:
            return _Conv("list", hint, _conv(arguments[0]))  # tuple[item, ...]
        return _Conv("dict", hint, _conv(arguments[1]))  # Mapping[key, item]
    return _Conv("leaf", hint)


def _plainly_constructed(cls: type) -> bool:
    """Whether ``cls(**fields)`` only stores the fields and calls ``__post_init__``.

    True for a dataclass whose ``__init__`` is the one ``dataclasses`` generated,
    without ``__slots__``, ``InitVar`` or ``init=False`` fields, a ``__new__`` of its
    own or a descriptor in a field's place. Its instances can then be built by storing
    the same values in the same order in a new instance's ``__dict__`` and calling
    ``__post_init__``, which is what the generated ``__init__`` does, less the call.
    """
    init = cls.__dict__.get("__init__")
    params = getattr(cls, "__dataclass_params__", None)
    if init is None or params is None or not params.init or "__slots__" in cls.__dict__:
        return False
    if getattr(init, "__code__", None) is None or init.__code__.co_filename != "<string>":
        return False
    if cls.__new__ is not object.__new__ or not hasattr(object.__new__(cls), "__dict__"):
        return False
    declared = cls.__dict__.get("__dataclass_fields__", {})
    for spec in declared.values():
        if spec._field_type is not dataclasses._FIELD:  # type: ignore[attr-defined]
            if spec._field_type is dataclasses._FIELD_INITVAR:  # type: ignore[attr-defined]
                return False
            continue  # a ClassVar
        if not spec.init or hasattr(inspect.getattr_static(cls, spec.name, None), "__set__"):
            return False
    return True


def _dataclass_fields(cls: type) -> dict[str, Any]:
    """The fields of the dataclass ``cls`` and their type hints, in order."""
    hints = typing.get_type_hints(cls)
    return {spec.name: hints[spec.name] for spec in dataclasses.fields(cls)}


# --- Source generation. -----------------------------------------------------------------


class _Source:
    """Lines of generated source and the constants they refer to."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {
            "Unsure": Unsure,
            "_length": _length,
            "_zigzag": _zigzag,
            "_uvarint": _uvarint,
            "_read_varint": _read_varint,
            "_read_size": _read_size,
            "_LENGTHS": _LENGTHS,
            "_pack_double": struct.Struct("<d").pack,
            "_unpack_double": struct.Struct("<d").unpack_from,
            "str": str,
            "int": int,
            "float": float,
            "bytes": bytes,
            "list": list,
            "tuple": tuple,
            "dict": dict,
            "type": type,
            "len": len,
            "range": range,
            "_new": object.__new__,
            "_NoneType": type(None),
            "bool": bool,
        }
        self.counter = 0
        self.depth = 0

    def name(self, prefix: str) -> str:
        """A new variable name."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any, prefix: str = "K") -> str:
        """The name under which the generated code sees ``value``."""
        name = self.name(f"_{prefix}")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        """Add a line, indented ``indent`` levels."""
        self.lines.append("    " * indent + line)

    def resolve(self, node: Any) -> Any:
        """``node`` with a reference to a named type replaced by its definition."""
        if isinstance(node, str) and node not in _PRIMITIVES:
            if node not in self.named:
                raise _CannotCompile(f"unknown type {node!r}")
            self.depth += 1
            if self.depth > 1000:
                raise _CannotCompile("recursive schema")
            return self.named[node]
        return node

    def compile(self, function: str) -> Callable[..., Any]:
        """The function ``function`` of the lines, compiled."""
        namespace = dict(self.constants)
        exec(compile("\n".join(self.lines), f"<compiled {function}>", "exec"), namespace)
        compiled: Callable[..., Any] = namespace[function]
        return compiled


def _kind(node: Any) -> tuple[str, str | None]:
    """The Avro type of a (resolved) node and its logical type key, if any."""
    if isinstance(node, list):
        return "union", None
    if isinstance(node, str):
        return node, None
    kind = node["type"]
    if not isinstance(kind, str):
        raise _CannotCompile(f"nested type {kind!r}")
    logical = node.get("logicalType")
    return kind, (f"{kind}-{logical}" if logical else None)


def _attribute(owner: str, name: str) -> str:
    """Source reading the attribute ``name`` of ``owner`` (any field name)."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"{owner}.{name}"
    return f"getattr({owner}, {name!r})"


def _call(callee: str, arguments: Mapping[str, str]) -> str:
    """Source calling ``callee`` with keyword ``arguments`` (any field names)."""
    if all(name.isidentifier() and not keyword.iskeyword(name) for name in arguments):
        return f"{callee}({', '.join(f'{name}={value}' for name, value in arguments.items())})"
    items = ", ".join(f"{name!r}: {value}" for name, value in arguments.items())
    return f"{callee}(**{{{items}}})"


# --- The encoder. -----------------------------------------------------------------------


class _EncoderGenerator:
    """Writes the source of ``encode(event) -> bytes`` for one class and schema version."""

    def __init__(self, source: _Source) -> None:
        self.src = source

    def top(self, cls: type, schema: Any) -> None:
        """The function ``encode``; raises :class:`_CannotCompile` for unknown shapes."""
        src = self.src
        src.emit(0, "def encode(event):")
        src.emit(1, "out = bytearray()")
        type_name = cls.type.encode()  # type: ignore[attr-defined]
        envelope = {
            "type": (("string",), _length(len(type_name)) + type_name),
            "schema_version": (("int", "long"), _zigzag(cls.schema_version)),  # type: ignore[attr-defined]
        }
        fields = _dataclass_fields(cls)
        written = [spec["name"] for spec in schema["fields"]]
        if set(written) != set(fields) | set(envelope):
            raise _CannotCompile(f"{cls.__name__}'s fields are not its schema's")
        for spec in schema["fields"]:
            name = spec["name"]
            if name in envelope:
                kinds, constant = envelope[name]
                kind, logical = _kind(src.resolve(spec["type"]))
                if kind not in kinds or logical is not None:
                    raise _CannotCompile(f"envelope field {name}")
                src.emit(1, f"out += {src.constant(constant)}")
                continue
            value = src.name("v")
            src.emit(1, f"{value} = {_attribute('event', name)}")
            self.write(spec["type"], _conv(fields[name]), value, 1)
        src.emit(1, "return bytes(out)")

    def write(self, node: Any, conv: _Conv, value: str, indent: int) -> None:
        """Lines writing ``value`` (the attribute, before conversion) as ``node``."""
        src = self.src
        node = src.resolve(node)
        kind, logical = _kind(node)
        if kind != "union" and conv.kind not in _ACCEPTED_CONVERSIONS.get(kind, ("leaf", "ident")):
            # The reference path would turn the value into something else first.
            raise _CannotCompile(f"{kind} with the hint {conv.hint!r}")
        if logical is not None:
            self._logical(node, kind, logical, value, indent)
        elif kind in _PRIMITIVES:
            self._primitive(kind, value, indent)
        elif kind == "enum":
            self._enum(node, conv, value, indent)
        elif kind == "union":
            self._union(node, conv, value, indent)
        elif kind == "array":
            self._array(node, conv, value, indent)
        elif kind == "map":
            self._map(node, conv, value, indent)
        elif kind == "record":
            self._record(node, conv, value, indent)
        else:
            raise _CannotCompile(f"type {kind!r}")

    def _primitive(self, kind: str, value: str, indent: int) -> None:
        emit = self.src.emit
        if kind == "null":
            emit(indent, f"if {value} is not None: raise Unsure")
        elif kind == "boolean":
            emit(indent, f"if {value} is True: out.append(1)")
            emit(indent, f"elif {value} is False: out.append(0)")
            emit(indent, "else: raise Unsure")
        elif kind in ("int", "long"):
            low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
            emit(indent, f"if type({value}) is not int or not {low} <= {value} <= {high}:")
            emit(indent + 1, "raise Unsure")
            self._integer(value, indent)
        elif kind == "double":
            emit(indent, f"if type({value}) is not float and type({value}) is not int:")
            emit(indent + 1, "raise Unsure")
            emit(indent, f"out += _pack_double({value})")
        elif kind == "string":
            emit(indent, f"if type({value}) is not str: raise Unsure")
            self._text(value, indent)
        elif kind == "bytes":
            emit(indent, f"if type({value}) is not bytes: raise Unsure")
            emit(indent, f"out += _length(len({value}))")
            emit(indent, f"out += {value}")
        else:  # pragma: no cover - _PRIMITIVES lists the kinds above
            raise _CannotCompile(kind)

    def _integer(self, value: str, indent: int) -> None:
        """An ``int`` known to be within 64 bits."""
        emit = self.src.emit
        number = self.src.name("n")
        emit(indent, f"{number} = ({value} << 1) ^ ({value} >> 63)")
        emit(indent, f"if {number} < 128: out.append({number})")
        emit(indent, f"else: out += _uvarint({number})")

    def _text(self, value: str, indent: int) -> None:
        """A ``str`` known to be exactly one."""
        emit = self.src.emit
        data, size = self.src.name("s"), self.src.name("n")
        emit(indent, f"{data} = {value}.encode()")
        emit(indent, f"{size} = len({data})")
        emit(indent, f"out += _LENGTHS[{size}] if {size} < {_TABLE_SIZE} else _zigzag({size})")
        emit(indent, f"out += {data}")

    def _logical(self, node: Any, kind: str, logical: str, value: str, indent: int) -> None:
        expected = _SUPPORTED_LOGICAL.get(logical)
        prepare = LOGICAL_WRITERS.get(logical)
        if expected is None or prepare is None:
            raise _CannotCompile(f"logical type {logical}")
        src = self.src
        prepared = src.name("m")
        src.emit(indent, f"if type({value}) is not {src.constant(expected, 'T')}: raise Unsure")
        src.emit(
            indent,
            f"{prepared} = {src.constant(prepare, 'prepare')}({value}, {src.constant(node, 'N')})",
        )
        self._primitive(kind, prepared, indent)

    def _enum(self, node: Any, conv: _Conv, value: str, indent: int) -> None:
        src = self.src
        indices: dict[str, bytes] = {}
        for index, symbol in enumerate(node["symbols"]):
            indices.setdefault(symbol, _zigzag(index))  # list.index: the first one
        table = src.constant(indices, "symbols")
        symbol = src.name("e")
        enum_class = conv.hint if conv.kind == "leaf" else None
        src.emit(indent, f"if type({value}) is str: {symbol} = {table}.get({value})")
        if isinstance(enum_class, type) and issubclass(enum_class, Enum):
            members = src.constant(enum_class, "E")
            src.emit(indent, f"elif type({value}) is {members}:")
            src.emit(indent + 1, f"{symbol} = {value}._value_")
            src.emit(
                indent + 1, f"{symbol} = {table}.get({symbol}) if type({symbol}) is str else None"
            )
        src.emit(indent, "else: raise Unsure")
        src.emit(indent, f"if {symbol} is None: raise Unsure")
        src.emit(indent, f"out += {symbol}")

    def _union(self, branches: list[Any], conv: _Conv, value: str, indent: int) -> None:
        src = self.src
        if len(branches) == 2 and src.resolve(branches[0]) == "null":
            # Anything but None only fits the other branch, which fastavro then picks.
            src.emit(indent, f"if {value} is None: out.append(0)")
            src.emit(indent, "else:")
            src.emit(indent + 1, "out.append(2)")
            self.write(branches[1], conv, value, indent + 1)
            return
        if conv.kind not in ("leaf", "ident"):
            raise _CannotCompile(f"union with the hint {conv.hint!r}")
        kinds = []
        for branch in branches:
            kind, logical = _kind(src.resolve(branch))
            if logical is not None or kind not in _PRIMITIVES or len(branches) > 63:
                raise _CannotCompile(f"union branch {branch!r}")
            kinds.append(kind)

        def first(kind: str) -> int | None:
            return kinds.index(kind) if kind in kinds else None

        emit = src.emit
        kind_of = src.name("t")
        emit(indent, f"{kind_of} = type({value})")
        keyword_ = "if"
        # Exact types, each taken by one branch kind only (a bool is no int for fastavro's
        # validation); the commonest first.
        for kind, python_type in (
            ("string", "str"),
            ("null", "_NoneType"),
            ("double", "float"),
            ("boolean", "bool"),
            ("bytes", "bytes"),
        ):
            index = first(kind)
            if index is None:
                continue
            emit(indent, f"{keyword_} {kind_of} is {python_type}:")
            emit(indent + 1, f"out.append({index << 1})")
            if kind == "string":
                self._text(value, indent + 1)
            elif kind == "double":
                emit(indent + 1, f"out += _pack_double({value})")
            elif kind == "boolean":
                emit(indent + 1, f"out.append(1 if {value} else 0)")
            elif kind == "bytes":
                emit(indent + 1, f"out += _length(len({value}))")
                emit(indent + 1, f"out += {value}")
            keyword_ = "elif"
        # An int goes to the first branch whose validation takes it: an int or a long
        # whose range holds it, or any double.
        candidates = [(index, kind) for index, kind in enumerate(kinds) if kind in ("int", "long")]
        double = first("double")
        if candidates or double is not None:
            emit(indent, f"{keyword_} {kind_of} is int:")
            inner = "if"
            for index, kind in candidates:
                if double is not None and double < index:
                    break
                low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
                emit(indent + 1, f"{inner} {low} <= {value} <= {high}:")
                emit(indent + 2, f"out.append({index << 1})")
                self._integer(value, indent + 2)
                inner = "elif"
            if double is not None:
                emit(indent + 1, "else:" if inner == "elif" else "if True:")
                emit(indent + 2, f"out.append({double << 1})")
                emit(indent + 2, f"out += _pack_double({value})")
            else:
                emit(indent + 1, "else: raise Unsure")
            keyword_ = "elif"
        emit(indent, "else: raise Unsure" if keyword_ == "elif" else "raise Unsure")

    def _array(self, node: Any, conv: _Conv, value: str, indent: int) -> None:
        src = self.src
        emit = src.emit
        if conv.kind == "list":
            emit(indent, f"if type({value}) is not list and type({value}) is not tuple:")
        else:  # the reference path passes it on unchanged: fastavro takes a list
            emit(indent, f"if type({value}) is not list:")
        emit(indent + 1, "raise Unsure")
        item_conv = conv.item if conv.kind == "list" and conv.item is not None else _IDENT
        emit(indent, f"if {value}:")
        emit(indent + 1, f"out += _length(len({value}))")
        item = src.name("i")
        emit(indent + 1, f"for {item} in {value}:")
        self.write(node["items"], item_conv, item, indent + 2)
        emit(indent, "out.append(0)")

    def _map(self, node: Any, conv: _Conv, value: str, indent: int) -> None:
        src = self.src
        emit = src.emit
        emit(indent, f"if type({value}) is not dict: raise Unsure")
        item_conv = conv.item if conv.kind == "dict" and conv.item is not None else _IDENT
        emit(indent, f"if {value}:")
        emit(indent + 1, f"out += _length(len({value}))")
        key, item = src.name("k"), src.name("i")
        emit(indent + 1, f"for {key}, {item} in {value}.items():")
        emit(indent + 2, f"if type({key}) is not str: raise Unsure")
        self._text(key, indent + 2)
        self.write(node["values"], item_conv, item, indent + 2)
        emit(indent, "out.append(0)")

    def _record(self, node: Any, conv: _Conv, value: str, indent: int) -> None:
        src = self.src
        cls = conv.hint if conv.kind == "leaf" else None
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise _CannotCompile(f"record {node.get('name')} without a dataclass hint")
        fields = _dataclass_fields(cls)
        if {spec["name"] for spec in node["fields"]} != set(fields):
            raise _CannotCompile(f"{cls.__name__}'s fields are not its schema's")
        src.emit(indent, f"if type({value}) is not {src.constant(cls, 'C')}: raise Unsure")
        for spec in node["fields"]:
            field_value = src.name("v")
            src.emit(indent, f"{field_value} = {_attribute(value, spec['name'])}")
            self.write(spec["type"], _conv(fields[spec["name"]]), field_value, indent)


# --- The decoder. -----------------------------------------------------------------------


class _DecoderGenerator:
    """Writes the source of ``decode(buffer) -> event`` for one class and schema version."""

    def __init__(self, source: _Source) -> None:
        self.src = source

    def top(self, cls: type, schema: Any) -> None:
        """The function ``decode``; raises :class:`_CannotCompile` for unknown shapes."""
        src = self.src
        fields = _dataclass_fields(cls)
        written = {spec["name"] for spec in schema["fields"]}
        if not set(fields) <= written or not {"type", "schema_version"} <= written:
            raise _CannotCompile(f"{cls.__name__}'s fields are not in its schema")
        src.emit(0, "def decode(b):")
        src.emit(1, "L = len(b)")
        src.emit(1, "p = 0")
        arguments: dict[str, str] = {}
        envelope: dict[str, str] = {}
        for spec in schema["fields"]:
            name = spec["name"]
            value = src.name("v")
            if name in ("type", "schema_version"):
                self.read(spec["type"], _IDENT, value, 1)
                envelope[name] = value
            else:
                conv = _conv(fields[name]) if name in fields else _IDENT
                self.read(spec["type"], conv, value, 1)
                if name in fields:
                    arguments[name] = value
        src.emit(1, "if p != L: raise Unsure")
        src.emit(1, f"if {envelope['type']} != {src.constant(cls.type)}: raise Unsure")  # type: ignore[attr-defined]
        version = src.constant(cls.schema_version)  # type: ignore[attr-defined]
        src.emit(1, f"if type({envelope['schema_version']}) is not int: raise Unsure")
        src.emit(1, f"if {envelope['schema_version']} != {version}: raise Unsure")
        arguments = {name: arguments[name] for name in fields}  # the class's order
        self._construct(cls, arguments, "event", 1)
        src.emit(1, "return event")

    def _construct(self, cls: type, arguments: Mapping[str, str], target: str, indent: int) -> None:
        """Lines building ``cls(**arguments)`` into ``target``."""
        src = self.src
        if not _plainly_constructed(cls):
            src.emit(indent, f"{target} = " + _call(src.constant(cls, "C"), arguments))
            return
        items = ", ".join(f"{name!r}: {value}" for name, value in arguments.items())
        src.emit(indent, f"{target} = _new({src.constant(cls, 'C')})")
        src.emit(indent, f"{target}.__dict__.update({{{items}}})")
        if hasattr(cls, "__post_init__"):
            src.emit(indent, f"{target}.__post_init__()")

    def read(self, node: Any, conv: _Conv, target: str, indent: int) -> None:
        """Lines reading ``node`` at ``p`` into ``target``, converted as ``conv`` says."""
        src = self.src
        node = src.resolve(node)
        kind, logical = _kind(node)
        if kind != "union" and conv.kind not in _ACCEPTED_CONVERSIONS.get(kind, ("leaf", "ident")):
            raise _CannotCompile(f"{kind} with the hint {conv.hint!r}")
        if logical is not None:
            self._logical(node, kind, logical, target, indent)
            self._plain_conversion(conv, target, indent)
        elif kind in _PRIMITIVES:
            self._primitive(kind, target, indent)
            self._plain_conversion(conv, target, indent)
        elif kind == "enum":
            self._enum(node, conv, target, indent)
        elif kind == "union":
            self._union(node, conv, target, indent)
        elif kind == "array":
            self._array(node, conv, target, indent)
        elif kind == "map":
            self._map(node, conv, target, indent)
        elif kind == "record":
            self._record(node, conv, target, indent)
        else:
            raise _CannotCompile(f"type {kind!r}")

    def _plain_conversion(self, conv: _Conv, target: str, indent: int) -> None:
        """What ``records`` does to a value read as it is: only an odd hint changes it."""
        if conv.kind == "ident" or (conv.kind == "leaf" and _leaves_unchanged(conv.hint)):
            return
        self._reference_conversion(conv, target, indent)

    def _reference_conversion(self, conv: _Conv, target: str, indent: int) -> None:
        from schema_registry.records import _compile_from_avro

        converter = _compile_from_avro(conv.hint)
        if converter is None:
            return
        name = self.src.constant(converter, "convert")
        self.src.emit(indent, f"if {target} is not None: {target} = {name}({target})")

    def _varint(self, target: str, indent: int) -> None:
        emit = self.src.emit
        emit(indent, f"{target} = b[p]")
        emit(indent, f"if {target} < 128:")
        emit(indent + 1, "p += 1")
        emit(indent + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")
        emit(indent, f"else: {target}, p = _read_varint(b, p)")

    def _size(self, target: str, indent: int) -> None:
        """A length or count: never negative here."""
        emit = self.src.emit
        emit(indent, f"{target} = b[p]")
        emit(indent, f"if {target} & 0x81: {target}, p = _read_size(b, p)")
        emit(indent, "else:")
        emit(indent + 1, "p += 1")
        emit(indent + 1, f"{target} >>= 1")

    def _primitive(self, kind: str, target: str, indent: int) -> None:
        src = self.src
        emit = src.emit
        if kind == "null":
            emit(indent, f"{target} = None")
        elif kind == "boolean":
            emit(indent, f"{target} = b[p]")
            emit(indent, f"if {target} > 1: raise Unsure")
            emit(indent, f"{target} = {target} == 1")
            emit(indent, "p += 1")
        elif kind in ("int", "long"):
            self._varint(target, indent)
        elif kind == "double":
            emit(indent, f"{target} = _unpack_double(b, p)[0]")
            emit(indent, "p += 8")
        elif kind in ("string", "bytes"):
            end = src.name("n")
            # The length, then the end position; a one-byte length inline.
            emit(indent, f"{end} = b[p]")
            emit(indent, f"if {end} & 0x81:")
            emit(indent + 1, f"{end}, p = _read_size(b, p)")
            emit(indent + 1, f"{end} += p")
            emit(indent, "else:")
            emit(indent + 1, f"{end} = p + 1 + ({end} >> 1)")
            emit(indent + 1, "p += 1")
            # A slice past the end is short, but leaves ``p`` past the end: the
            # final check refuses it (and any read in between fails or is refused).
            size = end
            decode = ".decode()" if kind == "string" else ""
            emit(indent, f"{target} = b[p:{size}]{decode}")
            emit(indent, f"p = {size}")
        else:  # pragma: no cover
            raise _CannotCompile(kind)

    def _logical(self, node: Any, kind: str, logical: str, target: str, indent: int) -> None:
        convert = LOGICAL_READERS.get(logical)
        if logical not in _SUPPORTED_LOGICAL or convert is None:
            raise _CannotCompile(f"logical type {logical}")
        src = self.src
        self._primitive(kind, target, indent)
        reader = src.constant(convert, "logical")
        src.emit(indent, f"{target} = {reader}({target}, {src.constant(node, 'N')}, None)")

    def _enum(self, node: Any, conv: _Conv, target: str, indent: int) -> None:
        src = self.src
        emit = src.emit
        symbols = tuple(node["symbols"])
        index = src.name("x")
        self._varint(index, indent)
        emit(indent, f"if not 0 <= {index} < {len(symbols)}: raise Unsure")
        enum_class = conv.hint if conv.kind == "leaf" else None
        if isinstance(enum_class, type) and issubclass(enum_class, Enum):
            # ``records`` calls the class with the symbol: its member, looked up once.
            members = tuple(enum_class._value2member_map_.get(symbol) for symbol in symbols)
            emit(indent, f"{target} = {src.constant(members, 'members')}[{index}]")
            emit(indent, f"if {target} is None:")
            emit(
                indent + 1,
                f"{target} = {src.constant(enum_class, 'E')}"
                f"({src.constant(symbols, 'symbols')}[{index}])",
            )
        else:
            emit(indent, f"{target} = {src.constant(symbols, 'symbols')}[{index}]")
            self._plain_conversion(conv, target, indent)

    def _union(self, branches: list[Any], conv: _Conv, target: str, indent: int) -> None:
        src = self.src
        emit = src.emit
        if len(branches) > 63:
            raise _CannotCompile("a union of more than 63 branches")
        # A union's value converts as its hint says (``None`` never does).
        emit(indent, f"{target} = b[p]")
        emit(indent, "p += 1")
        selector = src.name("u")
        emit(indent, f"{selector} = {target}")
        for index, branch in enumerate(branches):
            emit(indent, f"{'if' if index == 0 else 'elif'} {selector} == {index << 1}:")
            self.read(branch, conv, target, indent + 1)
        emit(indent, "else: raise Unsure")

    def _block_count(self, count: str, indent: int) -> None:
        """A block's count: a negative one (with its byte size) is left to fastavro."""
        self._size(count, indent)
        self.src.emit(indent, f"if {count} > L - p: raise Unsure")

    def _array(self, node: Any, conv: _Conv, target: str, indent: int) -> None:
        src = self.src
        emit = src.emit
        converting = conv.kind == "list"
        item_conv = conv.item if converting and conv.item is not None else _IDENT
        items, count, item = src.name("a"), src.name("c"), src.name("i")
        emit(indent, f"{items} = []")
        self._block_count(count, indent)
        emit(indent, f"while {count}:")
        emit(indent + 1, f"for _ in range({count}):")
        self.read(node["items"], item_conv, item, indent + 2)
        emit(indent + 2, f"{items}.append({item})")
        self._block_count(count, indent + 1)
        emit(indent, f"{target} = tuple({items})" if converting else f"{target} = {items}")
        if conv.kind == "leaf" and not _leaves_unchanged(conv.hint):
            raise _CannotCompile(f"array with the hint {conv.hint!r}")

    def _map(self, node: Any, conv: _Conv, target: str, indent: int) -> None:
        src = self.src
        emit = src.emit
        converting = conv.kind == "dict"
        item_conv = conv.item if converting and conv.item is not None else _IDENT
        entries, count, key, item = src.name("d"), src.name("c"), src.name("k"), src.name("i")
        emit(indent, f"{entries} = {{}}")
        self._block_count(count, indent)
        emit(indent, f"while {count}:")
        emit(indent + 1, f"for _ in range({count}):")
        self._primitive("string", key, indent + 2)
        self.read(node["values"], item_conv, item, indent + 2)
        emit(indent + 2, f"{entries}[{key}] = {item}")
        self._block_count(count, indent + 1)
        emit(indent, f"{target} = {entries}")
        if conv.kind == "leaf" and not _leaves_unchanged(conv.hint):
            raise _CannotCompile(f"map with the hint {conv.hint!r}")

    def _record(self, node: Any, conv: _Conv, target: str, indent: int) -> None:
        src = self.src
        cls = conv.hint if conv.kind == "leaf" else None
        building = isinstance(cls, type) and dataclasses.is_dataclass(cls)
        if conv.kind == "leaf" and not building and not _leaves_unchanged(conv.hint):
            raise _CannotCompile(f"record {node.get('name')} with the hint {conv.hint!r}")
        fields = _dataclass_fields(cls) if building and cls is not None else {}
        if building and not set(fields) <= {spec["name"] for spec in node["fields"]}:
            raise _CannotCompile(f"{cls!r}'s fields are not in its schema")
        values: dict[str, str] = {}
        for spec in node["fields"]:
            name = spec["name"]
            value = src.name("v")
            field_conv = _conv(fields[name]) if name in fields else _IDENT
            self.read(spec["type"], field_conv, value, indent)
            values[name] = value
        if building:
            arguments = {name: values[name] for name in fields}
            self._construct(typing.cast(type, cls), arguments, target, indent)
        else:
            items = ", ".join(f"{name!r}: {value}" for name, value in values.items())
            src.emit(indent, f"{target} = {{{items}}}")


def _leaves_unchanged(hint: Any) -> bool:
    """Whether ``records`` returns an Avro value of ``hint`` as it is read."""
    if isinstance(hint, type) and (issubclass(hint, Enum) or dataclasses.is_dataclass(hint)):
        return False
    origin = typing.get_origin(hint)
    return not (origin is tuple or origin is Mapping)


# --- Entry points. ------------------------------------------------------------------------


#: Compiled code by (schema version, class), built on first use (a race builds one twice).
_ENCODERS: dict[tuple[catalog.SchemaVersion, type], Encoder | None] = {}
_DECODERS: dict[tuple[catalog.SchemaVersion, type], Decoder | None] = {}


def encoder(version: catalog.SchemaVersion, cls: type[Event]) -> Encoder | None:
    """The compiled encoder of ``cls`` events with ``version``; ``None`` if there is none.

    The encoder returns the payload fastavro's ``schemaless_writer`` writes for
    ``to_record(event)``, or raises when it cannot vouch for it.
    """
    key = (version, cls)
    if key not in _ENCODERS:
        _ENCODERS[key] = _compile_encoder(version, cls)
    return _ENCODERS[key]


def decoder(version: catalog.SchemaVersion, cls: type[Event]) -> Decoder | None:
    """The compiled decoder of ``cls`` events written with ``version``, the class's own.

    The decoder returns the event the reference path (fastavro's ``schemaless_reader``
    then ``from_record``) reads from the payload, or raises when it cannot vouch for it.
    """
    key = (version, cls)
    if key not in _DECODERS:
        _DECODERS[key] = _compile_decoder(version, cls)
    return _DECODERS[key]


def _compile_encoder(version: catalog.SchemaVersion, cls: type[Event]) -> Encoder | None:
    if cls.schema_version != version.version:
        return None
    parsed = version.parsed
    source = _Source(parsed.get("__named_schemas", {}))
    try:
        _EncoderGenerator(source).top(cls, parsed)
        return source.compile("encode")
    # A shape the generator does not know (or a fault of its own, which must not
    # break the codec): the reference path handles every value.
    except Exception:
        return None


def _compile_decoder(version: catalog.SchemaVersion, cls: type[Event]) -> Decoder | None:
    if cls.schema_version != version.version:
        return None
    parsed = version.parsed
    source = _Source(parsed.get("__named_schemas", {}))
    try:
        _DecoderGenerator(source).top(cls, parsed)
        return source.compile("decode")
    # A shape the generator does not know (or a fault of its own, which must not
    # break the codec): the reference path handles every value.
    except Exception:
        return None


def source_of(version: catalog.SchemaVersion, cls: type[Event], which: str) -> str:
    """The generated source of the ``"encode"`` or ``"decode"`` function (for reading)."""
    parsed = version.parsed
    source = _Source(parsed.get("__named_schemas", {}))
    generator = _EncoderGenerator(source) if which == "encode" else _DecoderGenerator(source)
    generator.top(cls, parsed)
    return "\n".join(source.lines)
