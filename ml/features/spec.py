"""Feature definitions and their one encoding, shared by training and serving.

A :class:`FeatureSet` names a model's inputs, their types, where each comes from, and
how raw values are cleaned. Training builds its frame with :meth:`FeatureSet.frame`;
serving builds ONNX inputs with :meth:`FeatureSet.feeds` (many rows) or
:meth:`FeatureSet.row_feeds` (one record), and both apply the same rules:

* numeric: numbers, numeric strings (``"1,234.5"``, ``"$12"``, ``"45%"``) and booleans are accepted; anything
  else (``None``, ``""``, ``"n/a"``, NaN, infinities) is *missing* and becomes NaN, which
  the model imputes with the training median; finite values are clipped to the
  feature's ``[low, high]`` range;
* categorical: text is stripped; ``None``, NaN and blank become :data:`MISSING`; values
  never seen in training are accepted and encode to no known category.

Every model has one ONNX input per feature, ``float32 [N, 1]`` or ``string [N, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

MISSING = "__missing__"

Record = Mapping[str, Any]
Derivation = Callable[[Record, date], Any]


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
    values[~np.isfinite(values)] = np.nan
    return (
        np.clip(values, low, high).astype(np.float32)
        if (low, high) != (None, None)
        else values.astype(np.float32)
    )


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
        day = as_of or datetime.now(UTC).date()
        table = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
        columns: dict[str, Any] = {}
        for feature in self.features:
            key = next((k for k in feature.keys if k in table.columns), None)
            if key is not None:
                raw = table[key]
            elif feature.derive is not None:
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
        return pd.DataFrame(columns, index=table.index)

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
