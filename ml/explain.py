"""Model-agnostic explanations by occlusion against the training baseline.

For a row ``x`` and each feature ``j``, the row is copied with ``x_j`` replaced by the
feature's training baseline (median for numbers, most frequent value for categories).
The contribution of ``j`` is ``p(x) - p(x with j at baseline)``: positive when the
row's value raises the probability. Rows and all their occluded copies are scored in
one batched ONNX call. The same :class:`Explanation` fills ``AI_Reasoning__c`` and
``Risk_Factors__c`` (see :meth:`Explanation.reasoning`) and is recorded in decisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from ml.features.spec import FeatureType, Record
from ml.inference import LoadedModel

_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class Factor:
    """One feature's part in a prediction."""

    feature: str
    value: float | str | None
    baseline: float | str | None
    contribution: float

    @property
    def direction(self) -> str:
        """``"increases"`` or ``"decreases"``: how this value moves the probability."""
        return "increases" if self.contribution > 0 else "decreases"

    def describe(self) -> str:
        """One line, e.g. ``usage_trend_30d = -0.42 (typical 0.01) increases it by 0.12``."""
        return describe_factor(
            self.feature, self.value, format_value(self.baseline), self.contribution
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded in decision events."""
        return {
            "feature": self.feature,
            "value": self.value,
            "baseline": self.baseline,
            "contribution": round(self.contribution, 6),
            "direction": self.direction,
        }


def format_value(value: float | str | None) -> str:
    """A value as factor descriptions show it: floats to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def describe_factor(
    feature: str, value: float | str | None, typical: str, contribution: float
) -> str:
    """:meth:`Factor.describe` from its parts, ``typical`` being the formatted baseline."""
    if value is None:
        shown = "missing"
    elif isinstance(value, float):
        shown = f"{value:.4g}"
    else:
        shown = str(value)
    direction = "increases" if contribution > 0 else "decreases"
    return f"{feature} = {shown} (typical {typical}) {direction} it by {abs(contribution):.3f}"


def reasoning_text(
    model_name: str, model_version: int, probability: float, descriptions: Sequence[str]
) -> str:
    """:meth:`Explanation.reasoning` from the factors' descriptions."""
    lines = [f"{model_name} v{model_version}: probability {probability:.1%}"]
    lines.extend(f"- {description}" for description in descriptions)
    return "\n".join(lines)


@dataclass(frozen=True)
class Explanation:
    """A probability with its top contributing features, largest effect first."""

    model_name: str
    model_version: int
    probability: float
    factors: tuple[Factor, ...]

    def reasoning(self) -> str:
        """Plain text for ``AI_Reasoning__c`` / ``Risk_Factors__c``."""
        return reasoning_text(
            self.model_name,
            self.model_version,
            self.probability,
            [factor.describe() for factor in self.factors],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "probability": self.probability,
            "factors": [factor.to_dict() for factor in self.factors],
        }


def _occluded_feeds(model: LoadedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each row followed by one copy per feature with that feature at its baseline."""
    width = len(model.features.features) + 1
    for j, feature in enumerate(model.features.features):
        column = np.repeat(feeds[feature.name], width, axis=0)
        column[j + 1 :: width] = model.manifest.baseline[feature.name]
        feeds[feature.name] = column
    return feeds


def _value(raw: Any, kind: FeatureType) -> float | str | None:
    if kind is FeatureType.NUMERIC:
        number = float(raw)
        return None if math.isnan(number) else number
    return str(raw)


def factor_values(column: np.ndarray, kind: FeatureType) -> list[float | str | None]:
    """Every value of a cleaned column as a :class:`Factor` shows it (floats or text).

    Numbers become floats (``None`` if missing) and categories text: for the columns of
    :meth:`FeatureSet.columns` (float32 or str) these are also their JSON-ready values.
    """
    if kind is FeatureType.NUMERIC:
        numbers = [float(raw) for raw in column.tolist()]
        return [None if math.isnan(number) else number for number in numbers]
    return [str(raw) for raw in column.tolist()]


@dataclass(frozen=True)
class Attribution:
    """Occlusion results of many rows as plain lists, from which explanations are built."""

    #: Per row, the model's probability.
    probabilities: list[float]
    #: Per row, each feature's contribution (in the feature set's order).
    contributions: list[list[float]]
    #: Per row, the indices of the top features by absolute contribution, largest first
    #: (ties in feature order), those contributing exactly zero left out.
    top: list[list[int]]


def attribute(
    model: LoadedModel, columns: Mapping[str, np.ndarray], rows: int, top: int = 5
) -> Attribution:
    """Occlusion attribution of ``rows`` rows given as one array per feature (batched ONNX calls).

    ``columns`` are the cleaned inputs, as :meth:`FeatureSet.columns` gives them or a
    frame's columns; scores are computed in chunks of at most ``_CHUNK_ROWS`` ONNX rows.
    """
    features = model.features.features
    width = len(features) + 1
    rows_per_chunk = max(1, _CHUNK_ROWS // width)
    probabilities: list[float] = []
    contributions: list[list[float]] = []
    order: list[list[int]] = []
    for start in range(0, rows, rows_per_chunk):
        stop = min(rows, start + rows_per_chunk)
        feeds = {}
        for feature in features:
            dtype: Any = np.float32 if feature.type is FeatureType.NUMERIC else object
            column = columns[feature.name][start:stop]
            feeds[feature.name] = column.astype(dtype, copy=False).reshape(-1, 1)
        scores = model.run(_occluded_feeds(model, feeds)).reshape(stop - start, width)
        chunk = scores[:, :1] - scores[:, 1:]
        ranked = np.argsort(-np.abs(chunk), axis=1, kind="stable")[:, :top]
        nonzero = np.take_along_axis(chunk, ranked, axis=1) != 0.0
        probabilities.extend(scores[:, 0].tolist())
        contributions.extend(chunk.tolist())
        if nonzero.all():
            order.extend(ranked.tolist())
        else:
            order.extend(
                [j for j, keep in zip(r, k, strict=True) if keep]
                for r, k in zip(ranked.tolist(), nonzero.tolist(), strict=True)
            )
    return Attribution(probabilities, contributions, order)


def explain_columns(
    model: LoadedModel, columns: Mapping[str, np.ndarray], rows: int, top: int = 5
) -> list[Explanation]:
    """Explanations of ``rows`` rows given as one cleaned array per feature."""
    features = model.features.features
    kinds = [feature.type for feature in features]
    baselines = [model.manifest.baseline[feature.name] for feature in features]
    cells = [columns[feature.name][:rows].tolist() for feature in features]
    result = attribute(model, columns, rows, top)
    return [
        Explanation(
            model.name,
            model.version,
            probability,
            tuple(
                Factor(features[j].name, _value(cells[j][i], kinds[j]), baselines[j], row[j])
                for j in ranked
            ),
        )
        for i, (probability, row, ranked) in enumerate(
            zip(result.probabilities, result.contributions, result.top, strict=True)
        )
    ]


def explain_frame(model: LoadedModel, frame: pd.DataFrame, top: int = 5) -> list[Explanation]:
    """Explanations of every row of a cleaned feature frame (batched ONNX calls)."""
    columns = {f.name: frame[f.name].to_numpy() for f in model.features.features}
    return explain_columns(model, columns, len(frame), top)


def explain(
    model: LoadedModel,
    data: pd.DataFrame | Sequence[Record],
    top: int = 5,
    as_of: date | None = None,
) -> list[Explanation]:
    """Explanations of raw rows or records (cleaned by the model's feature set first)."""
    return explain_frame(model, model.features.frame(data, as_of), top)
