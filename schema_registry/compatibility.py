"""Schema compatibility: whether a reader schema can read data written with a writer schema.

This implements the Avro specification's schema resolution rules on schema
definitions (JSON), the same rules a Confluent registry applies for BACKWARD
compatibility (the new version reads data written with the previous one):

- primitives match when equal or promotable (int → long/float/double,
  long → float/double, float → double, string ↔ bytes);
- records match by unqualified name or alias; every reader field is found in the
  writer (by name or alias) and matches, or has a default; writer-only fields are
  skipped;
- enums match by name, and every writer symbol is a reader symbol unless the reader
  enum has a default;
- arrays and maps match when their items and values do; fixed when name and size do;
- every branch of a writer union must match the reader (or a branch of a reader
  union); a non-union writer must match some branch of a reader union.

Logical types are compared by their underlying types. Each mismatch is reported with
the path where it was found, so an incompatible change says exactly what breaks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import pairwise
from typing import Any

from schema_registry import catalog

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "error", "enum", "fixed")


class _Schema:
    """A schema definition with its named types indexed, so references can be followed."""

    def __init__(self, definition: Any) -> None:
        self.names: dict[str, Any] = {}
        self._index(definition, "")
        self.root = definition

    def _index(self, node: Any, namespace: str) -> None:
        if isinstance(node, list):
            for branch in node:
                self._index(branch, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in _NAMED:
                fullname = _fullname(node["name"], node.get("namespace", namespace))
                self.names[fullname] = node
                namespace = fullname.rpartition(".")[0]
                for field in node.get("fields", ()):
                    self._index(field["type"], namespace)
            elif kind == "array":
                self._index(node["items"], namespace)
            elif kind == "map":
                self._index(node["values"], namespace)

    def resolve(self, node: Any) -> Any:
        """``node`` with a reference to a named type replaced by the type's definition."""
        if isinstance(node, str) and node not in PRIMITIVES:
            for fullname, definition in self.names.items():
                if fullname == node or fullname.rpartition(".")[2] == node:
                    return definition
            raise ValueError(f"unknown type reference {node!r}")
        if isinstance(node, dict) and node.get("type") in PRIMITIVES:
            return node["type"]  # {"type": "long", "logicalType": ...} reads as long
        return node


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    kind: str = node["type"]
    return kind


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader = _Schema(reader)
        self.writer = _Schema(writer)
        self._visiting: set[tuple[int, int]] = set()

    def problems(self) -> list[str]:
        return list(self.check(self.reader.root, self.writer.root, "$"))

    def matches(self, reader: Any, writer: Any, path: str) -> bool:
        return not any(True for _ in self.check(reader, writer, path))

    def check(self, reader: Any, writer: Any, path: str) -> Iterator[str]:
        reader, writer = self.reader.resolve(reader), self.writer.resolve(writer)
        pair = (id(reader), id(writer))
        if pair in self._visiting:  # a recursive type already being compared
            return
        self._visiting.add(pair)
        try:
            yield from self._check(reader, writer, path)
        finally:
            self._visiting.discard(pair)

    def _check(self, reader: Any, writer: Any, path: str) -> Iterator[str]:
        r_kind, w_kind = _kind(reader), _kind(writer)
        if w_kind == "union":
            for index, branch in enumerate(writer):
                yield from self.check(reader, branch, f"{path}<union branch {index}>")
        elif r_kind == "union":
            if not any(self.matches(branch, writer, path) for branch in reader):
                yield f"{path}: no branch of the reader union {self._names(reader)} reads writer type {w_kind}"
        elif r_kind in PRIMITIVES or w_kind in PRIMITIVES:
            if r_kind != w_kind and r_kind not in PROMOTIONS.get(w_kind, ()):
                yield f"{path}: reader type {r_kind} cannot read writer type {w_kind}"
        elif r_kind != w_kind and {r_kind, w_kind} != {"record", "error"}:
            yield f"{path}: reader type {r_kind} cannot read writer type {w_kind}"
        elif r_kind in ("record", "error"):
            yield from self._records(reader, writer, path)
        elif r_kind == "enum":
            yield from self._enums(reader, writer, path)
        elif r_kind == "array":
            yield from self.check(reader["items"], writer["items"], f"{path}[]")
        elif r_kind == "map":
            yield from self.check(reader["values"], writer["values"], f"{path}{{}}")
        elif r_kind == "fixed":
            yield from self._named(reader, writer, path)
            if reader["size"] != writer["size"]:
                yield f"{path}: fixed size {reader['size']} cannot read size {writer['size']}"

    def _names(self, union: list[Any]) -> list[str]:
        return [_kind(self.reader.resolve(branch)) for branch in union]

    def _named(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> Iterator[str]:
        accepted = {_short(reader["name"]), *(_short(alias) for alias in reader.get("aliases", ()))}
        if _short(writer["name"]) not in accepted:
            yield f"{path}: reader {reader['type']} {reader['name']} cannot read {writer['name']}"

    def _records(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> Iterator[str]:
        yield from self._named(reader, writer, path)
        written = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            source = next((written[name] for name in names if name in written), None)
            where = f"{path}.{field['name']}"
            if source is not None:
                yield from self.check(field["type"], source["type"], where)
            elif "default" not in field:
                yield f"{where}: field added without a default"

    def _enums(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> Iterator[str]:
        yield from self._named(reader, writer, path)
        missing = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
        if missing and "default" not in reader:
            yield f"{path}: enum {reader['name']} lost symbols {missing} and has no default"


def backward_problems(reader: Any, writer: Any) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty when it can)."""
    return _Checker(reader, writer).problems()


def subject_problems(subject: str) -> list[str]:
    """BACKWARD problems between each committed version of ``subject`` and the one before."""
    kept = catalog.versions(subject)
    problems = []
    for older, newer in pairwise(kept):
        for problem in backward_problems(newer.definition, older.definition):
            problems.append(f"{subject} v{newer.version} reading v{older.version}: {problem}")
    return problems
