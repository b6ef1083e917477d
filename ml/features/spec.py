"""Feature definitions and their one encoding, shared by training and serving.

A :class:`FeatureSet` names a model's inputs, their types, where each comes from, and
how raw values are cleaned. Training builds its frame with :meth:`FeatureSet.frame`;
serving builds ONNX inputs with :meth:`FeatureSet.feeds` (many rows) or
:meth:`FeatureSet.row_feeds` (one record), and batch scoring reads records' cleaned
columns with :meth:`FeatureSet.columns` (no table built); all apply the same rules:

* numeric: numbers, numeric strings (``"1,234.5"``, ``"$12"``, ``"45%"``) and booleans are accepted; anything
  else (``None``, ``""``, ``"n/a"``, NaN, infinities) is *missing* and becomes NaN, which
  the model imputes with the training median; finite values are clipped to the
  feature's ``[low, high]`` range;
* categorical: text is stripped; ``None``, NaN and blank become :data:`MISSING`; values
  never seen in training are accepted and encode to no known category.

Every model has one ONNX input per feature, ``float32 [N, 1]`` or ``string [N, 1]``.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

MISSING = "__missing__"

Record = Mapping[str, Any]
Derivation = Callable[[Record, date], Any]


@dataclass(frozen=True)
class FieldDerivation:
    """A derivation that reads one field: ``compute(record.get(field), as_of)``.

    ``compute`` must depend on nothing but its arguments: batch scoring calls it once per
    distinct text value of the field (see :meth:`FeatureSet.columns`).
    """

    field: str
    compute: Callable[[Any, date], Any]

    def __call__(self, record: Record, as_of: date) -> Any:
        """The derived raw value of ``record``."""
        return self.compute(record.get(self.field), as_of)


class FeatureType(StrEnum):
    """How a feature is encoded: a float32 number or a category string."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


def clean_number(value: Any, low: float | None = None, high: float | None = None) -> float:
    """One raw value as a clipped float, or NaN when it is missing or not a number."""
    if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "").lstrip("$€£¥").removesuffix("%")
        try:
            number = float(text)
        except ValueError:
            return math.nan
    else:
        return math.nan
    if not math.isfinite(number):
        return math.nan
    if low is not None and number < low:
        number = low
    if high is not None and number > high:
        number = high
    return float(np.float32(number))


def clean_category(value: Any) -> str:
    """One raw value as a category string; missing values become :data:`MISSING`."""
    if (
        value is None
        or value is pd.NA
        or (isinstance(value, float | np.floating) and math.isnan(value))
    ):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    return text if text else MISSING


def _clean_number_column(column: pd.Series, low: float | None, high: float | None) -> np.ndarray:
    if column.dtype == bool:
        numbers = column.astype(np.float64)
    elif pd.api.types.is_numeric_dtype(column.dtype):
        numbers = pd.to_numeric(column, errors="coerce").astype(np.float64)
    else:
        return np.array([clean_number(v, low, high) for v in column], dtype=np.float32)
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    return _clip_numbers(values, low, high)


def _clip_numbers(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """Float64 values as the feature's float32 column: non-finite ones missing, others clipped."""
    values[~np.isfinite(values)] = np.nan
    return (
        np.clip(values, low, high).astype(np.float32)
        if (low, high) != (None, None)
        else values.astype(np.float32)
    )


class _Absent:
    """Marks a key a record does not have (a table of records holds NaN there)."""

    __slots__ = ()


_ABSENT = _Absent()
_NONE_TYPES = frozenset({type(None), _Absent})
_NUMBER_TYPES = frozenset({int, float}) | _NONE_TYPES
_TEXT_TYPES = frozenset({str}) | _NONE_TYPES


def _clean_numbers(values: list[Any], low: float | None, high: float | None) -> np.ndarray:
    """``clean_number`` of each value as a float32 column (plain numbers in one pass)."""
    types = set(map(type, values))
    if not types <= _NUMBER_TYPES:
        return np.array([clean_number(v, low, high) for v in values], dtype=np.float32)
    if types & _NONE_TYPES:
        values = [math.nan if type(v) in _NONE_TYPES else v for v in values]
    return _clip_numbers(np.array(values, dtype=np.float64), low, high)


def _clean_categories(values: list[Any]) -> np.ndarray:
    """``clean_category`` of each value as an object column (text cleaned once per value)."""
    if not set(map(type, values)) <= _TEXT_TYPES:
        return np.array([clean_category(v) for v in values], dtype=object)
    cleaned = {v: MISSING if v is _ABSENT else clean_category(v) for v in set(values)}
    return np.array([cleaned[v] for v in values], dtype=object)


class _RecordColumns:
    """The columns of ``pd.DataFrame(list(records))``, each read only when a feature needs it.

    A column is typed by pandas exactly as in the whole table (pandas types each column
    of a list of dicts on its own), from a one-column table of the records' values; two
    common shapes skip pandas: text present in every record (pandas keeps it as it is)
    and, for cleaning only, plain numbers or plain text with gaps, whose cleaned values
    do not depend on how pandas types them.
    """

    def __init__(self, records: Sequence[Record]) -> None:
        """Index the keys of ``records`` in the table's column order (first seen first)."""
        self.records = records
        self.keys: dict[Any, None] = dict.fromkeys(itertools.chain.from_iterable(records))
        self._dicts = all(type(record) is dict for record in records)
        self._raw: dict[Any, list[Any]] = {}
        self._boxed: dict[Any, list[Any]] = {}

    def raw(self, key: Any) -> list[Any]:
        """Each record's value of ``key`` as given (:data:`_ABSENT` where it has none)."""
        values = self._raw.get(key)
        if values is None:
            values = self._raw[key] = self._read(key)
        return values

    def _read(self, key: Any) -> list[Any]:
        if self._dicts:  # plain dicts: a missing key raises KeyError and changes nothing
            try:
                return list(map(operator.itemgetter(key), self.records))
            except KeyError:
                pass  # some record lacks it
        return [record.get(key, _ABSENT) for record in self.records]

    def series(self, key: Any) -> pd.Series:
        """Column ``key`` of the table, typed by pandas (NaN where a record has no value)."""
        return pd.DataFrame([{key: v} if v is not _ABSENT else {} for v in self.raw(key)])[key]

    def boxed(self, key: Any) -> list[Any]:
        """Column ``key`` as ``to_dict(orient="records")`` of the table gives its values."""
        values = self._boxed.get(key)
        if values is None:
            raw = self.raw(key)
            if set(map(type, raw)) <= {str}:
                values = raw
            else:
                frame = self.series(key).to_frame()
                values = [row[key] for row in frame.to_dict(orient="records")]
            self._boxed[key] = values
        return values

    def numbers(self, key: Any, low: float | None, high: float | None) -> np.ndarray:
        """Column ``key`` cleaned as a numeric feature."""
        raw = self.raw(key)
        if not set(map(type, raw)) <= _NUMBER_TYPES:
            return _clean_number_column(self.series(key), low, high)
        return _clean_numbers(raw, low, high)

    def categories(self, key: Any) -> np.ndarray:
        """Column ``key`` cleaned as a categorical feature."""
        raw = self.raw(key)
        if not set(map(type, raw)) <= _TEXT_TYPES:
            return np.array([clean_category(v) for v in self.series(key)], dtype=object)
        return _clean_categories(raw)

    def derived(self, derive: FieldDerivation, as_of: date) -> list[Any]:
        """``derive`` of every row; once per distinct value when all are text or ``None``."""
        values = (
            self.boxed(derive.field) if derive.field in self.keys else [None] * len(self.records)
        )
        compute = derive.compute
        if set(map(type, values)) <= {str, type(None)}:
            known = {value: compute(value, as_of) for value in set(values)}
            return [known[value] for value in values]
        return [compute(value, as_of) for value in values]

    def rows(self) -> list[_RecordRow]:
        """One read-only view per record of its row of the table (what derivations read)."""
        return [_RecordRow(self, index) for index in range(len(self.records))]


class _RecordRow(Mapping[Any, Any]):
    """Row ``index`` of ``pd.DataFrame(list(records)).to_dict(orient="records")``, read lazily."""

    __slots__ = ("_index", "_table")

    def __init__(self, table: _RecordColumns, index: int) -> None:
        """View row ``index`` of ``table``."""
        self._table = table
        self._index = index

    def __getitem__(self, key: Any) -> Any:
        """The table's value of ``key`` in this row."""
        if key not in self._table.keys:
            raise KeyError(key)
        return self._table.boxed(key)[self._index]

    def get(self, key: Any, default: Any = None) -> Any:
        """The table's value of ``key`` in this row, or ``default`` if no record has it."""
        if key not in self._table.keys:
            return default
        return self._table.boxed(key)[self._index]

    def __contains__(self, key: object) -> bool:
        """Whether any record has ``key`` (the table has that column)."""
        return key in self._table.keys

    def __iter__(self) -> Iterator[Any]:
        """The table's columns."""
        return iter(self._table.keys)

    def __len__(self) -> int:
        """The number of the table's columns."""
        return len(self._table.keys)


@dataclass(frozen=True)
class Feature:
    """One model input: its name, type, origin, accepted record keys and valid range."""

    name: str
    type: FeatureType
    source: str
    aliases: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    derive: Derivation | None = field(default=None, compare=False, repr=False)

    @property
    def keys(self) -> tuple[str, ...]:
        """Record keys this feature is read from, in order of preference."""
        return (self.name, *self.aliases)

    def value(self, record: Record, as_of: date) -> Any:
        """The raw value of this feature in ``record`` (before cleaning)."""
        for key in self.keys:
            if key in record:
                return record[key]
        return self.derive(record, as_of) if self.derive is not None else None

    def clean(self, raw: Any) -> float | str:
        """Apply this feature's missing-value and range rules to one raw value."""
        if self.type is FeatureType.NUMERIC:
            return clean_number(raw, self.low, self.high)
        return clean_category(raw)

    def describe(self) -> dict[str, Any]:
        """The manifest entry of this feature."""
        return {
            "name": self.name,
            "type": self.type.value,
            "source": self.source,
            "aliases": list(self.aliases),
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_description(cls, entry: Mapping[str, Any]) -> Feature:
        """Rebuild a feature from its manifest entry (derivations are not stored)."""
        return cls(
            name=str(entry["name"]),
            type=FeatureType(entry["type"]),
            source=str(entry.get("source", "")),
            aliases=tuple(entry.get("aliases", ())),
            low=entry.get("low"),
            high=entry.get("high"),
        )


@dataclass(frozen=True)
class FeatureSet:
    """The ordered inputs of one model and the encoding of rows into them."""

    name: str
    features: tuple[Feature, ...]

    def __post_init__(self) -> None:
        """Reject duplicate names, which would make two ONNX inputs collide."""
        names = [feature.name for feature in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature set {self.name!r} repeats a feature name")

    @property
    def names(self) -> list[str]:
        """Feature names, in input order."""
        return [feature.name for feature in self.features]

    @property
    def numeric(self) -> list[str]:
        """Names of the numeric features."""
        return [f.name for f in self.features if f.type is FeatureType.NUMERIC]

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical features."""
        return [f.name for f in self.features if f.type is FeatureType.CATEGORICAL]

    def signature(self) -> list[tuple[str, str]]:
        """``(name, type)`` pairs: what a model serving this set must take as inputs."""
        return [(feature.name, feature.type.value) for feature in self.features]

    def absent_from(self, columns: Iterable[str]) -> list[str]:
        """Features that no column of a table provides (directly, by alias or derivation)."""
        present = set(columns)
        return [
            f.name for f in self.features if f.derive is None and not present.intersection(f.keys)
        ]

    def frame(
        self, data: pd.DataFrame | Sequence[Record], as_of: date | None = None
    ) -> pd.DataFrame:
        """Clean a table or records into one typed column per feature (float32 or str)."""
        if isinstance(data, pd.DataFrame):
            return pd.DataFrame(self._table_columns(data, as_of), index=data.index)
        records = list(data)
        return pd.DataFrame(self.columns(records, as_of), index=pd.RangeIndex(len(records)))

    def columns(
        self, records: Sequence[Record], as_of: date | None = None
    ) -> dict[str, np.ndarray]:
        """The cleaned inputs of records, one array per feature (float32, or object of str).

        :meth:`frame` of records is these columns. They equal, value for value, what
        cleaning the table ``pd.DataFrame(list(records))`` gives (as :meth:`frame` does
        for a table) but are built without that table: each column a feature reads is
        typed as pandas would type it (see :class:`_RecordColumns`), plain columns are
        cleaned in one pass, and a :class:`FieldDerivation` runs once per distinct text.
        """
        day = as_of or datetime.now(UTC).date()
        records = list(records)  # read once per column: an iterator would run dry
        table = _RecordColumns(records)
        rows: list[_RecordRow] | None = None
        columns: dict[str, np.ndarray] = {}
        for feature in self.features:
            key = next((k for k in feature.keys if k in table.keys), None)
            numeric = feature.type is FeatureType.NUMERIC
            if key is not None:
                columns[feature.name] = (
                    table.numbers(key, feature.low, feature.high)
                    if numeric
                    else table.categories(key)
                )
                continue
            if feature.derive is None:
                columns[feature.name] = (
                    np.full(len(records), np.nan, dtype=np.float32)
                    if numeric
                    else np.full(len(records), MISSING, dtype=object)
                )
                continue
            derive = feature.derive
            if isinstance(derive, FieldDerivation):
                derived = table.derived(derive, day)
            else:
                if rows is None:
                    rows = table.rows()
                derived = [derive(row, day) for row in rows]
            columns[feature.name] = (
                _clean_numbers(derived, feature.low, feature.high)
                if numeric
                else _clean_categories(derived)
            )
        return columns

    def _table_columns(self, table: pd.DataFrame, as_of: date | None) -> dict[str, Any]:
        """The cleaned columns of a table (training and CSV scoring)."""
        day = as_of or datetime.now(UTC).date()
        columns: dict[str, Any] = {}
        rows: list[dict[Any, Any]] | None = None
        for feature in self.features:
            key = next((k for k in feature.keys if k in table.columns), None)
            if key is not None:
                raw = table[key]
            elif feature.derive is not None:
                if rows is None:
                    rows = table.to_dict(orient="records")
                raw = pd.Series(
                    [feature.derive(r, day) for r in rows], index=table.index, dtype=object
                )
            else:
                raw = pd.Series([None] * len(table), index=table.index, dtype=object)
            if feature.type is FeatureType.NUMERIC:
                columns[feature.name] = _clean_number_column(raw, feature.low, feature.high)
            else:
                columns[feature.name] = np.array([clean_category(v) for v in raw], dtype=object)
        return columns

    def feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """ONNX inputs for a frame already built by :meth:`frame`."""
        feeds: dict[str, np.ndarray] = {}
        for feature in self.features:
            column = frame[feature.name].to_numpy()
            dtype: Any = np.float32 if feature.type is FeatureType.NUMERIC else object
            feeds[feature.name] = column.astype(dtype, copy=False).reshape(-1, 1)
        return feeds

    def row_feeds(self, record: Record, as_of: date | None = None) -> dict[str, np.ndarray]:
        """ONNX inputs for one record, without building a frame (the low-latency path)."""
        day = as_of or datetime.now(UTC).date()
        feeds: dict[str, np.ndarray] = {}
        for feature in self.features:
            value = feature.clean(feature.value(record, day))
            dtype: Any = np.float32 if feature.type is FeatureType.NUMERIC else object
            feeds[feature.name] = np.array([[value]], dtype=dtype)
        return feeds

    def row_values(
        self, record: Record, as_of: date | None = None
    ) -> dict[str, float | str | None]:
        """The cleaned inputs of one record, JSON-ready (missing numbers are ``None``).

        What a decision event records next to its score, so a replay need not recompute it.
        """
        day = as_of or datetime.now(UTC).date()
        values: dict[str, float | str | None] = {}
        for feature in self.features:
            value = feature.clean(feature.value(record, day))
            values[feature.name] = None if isinstance(value, float) and math.isnan(value) else value
        return values

    def describe(self) -> list[dict[str, Any]]:
        """Manifest entries of every feature."""
        return [feature.describe() for feature in self.features]

    @classmethod
    def from_description(cls, name: str, entries: Iterable[Mapping[str, Any]]) -> FeatureSet:
        """Rebuild a feature set from manifest entries (for models trained on an export)."""
        return cls(name=name, features=tuple(Feature.from_description(e) for e in entries))
