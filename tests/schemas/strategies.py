"""Hypothesis strategies that generate valid Avro records of any schema in the catalogue.

Records are drawn from the schema itself (not from the event classes), so a round trip
through the event classes also checks that classes and schemas agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from schema_registry import catalog

_MIN_TIME = datetime(1900, 1, 1)
_MAX_TIME = datetime(2200, 1, 1)

_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=24),
    "string": st.text(max_size=12),
}


def _millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=UTC)


class _Generator:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def strategy(self, node: Any) -> st.SearchStrategy[Any]:
        if isinstance(node, list):
            return st.one_of([self.strategy(branch) for branch in node])
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _PRIMITIVES[node]
            return self.strategy(self.named[node.rpartition(".")[2]])
        kind = node["type"]
        logical = node.get("logicalType")
        if logical == "timestamp-millis":
            return st.datetimes(_MIN_TIME, _MAX_TIME).map(_millis)
        if logical == "date":
            return st.dates()
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind in ("record", "enum", "fixed"):
            self.named[node["name"].rpartition(".")[2]] = node
        if kind == "record":
            return st.fixed_dictionaries(
                {field["name"]: self.strategy(field["type"]) for field in node["fields"]}
            )
        if kind == "enum":
            return st.sampled_from(node["symbols"])
        if kind == "array":
            return st.lists(self.strategy(node["items"]), max_size=3)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), self.strategy(node["values"]), max_size=3)
        raise ValueError(f"no strategy for {node!r}")


def records(subject: str, version: int | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Valid records of ``subject`` (latest version by default) with a coherent envelope."""
    kept = catalog.schema(subject, version)
    event_class = catalog.event_type(subject)
    strategy: st.SearchStrategy[dict[str, Any]] = _Generator().strategy(kept.definition)
    return strategy.map(
        lambda record: {**record, "type": event_class.type, "schema_version": kept.version}
    )
