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
from collections.abc import Sequence
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
        value = "missing" if self.value is None else _format(self.value)
        return (
            f"{self.feature} = {value} (typical {_format(self.baseline)}) "
            f"{self.direction} it by {abs(self.contribution):.3f}"
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


def _format(value: float | str | None) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Explanation:
    """A probability with its top contributing features, largest effect first."""

    model_name: str
    model_version: int
    probability: float
    factors: tuple[Factor, ...]

    def reasoning(self) -> str:
        """Plain text for ``AI_Reasoning__c`` / ``Risk_Factors__c``."""
        lines = [f"{self.model_name} v{self.model_version}: probability {self.probability:.1%}"]
        lines.extend(f"- {factor.describe()}" for factor in self.factors)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "probability": self.probability,
            "factors": [factor.to_dict() for factor in self.factors],
        }


def _occluded_feeds(model: LoadedModel, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each row followed by one copy per feature with that feature at its baseline."""
    width = len(model.features.features) + 1
    feeds = model.features.feeds(frame)
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


def explain_frame(model: LoadedModel, frame: pd.DataFrame, top: int = 5) -> list[Explanation]:
    """Explanations of every row of a cleaned feature frame (batched ONNX calls)."""
    features = model.features.features
    width = len(features) + 1
    rows_per_chunk = max(1, _CHUNK_ROWS // width)
    explanations: list[Explanation] = []
    for start in range(0, len(frame), rows_per_chunk):
        chunk = frame.iloc[start : start + rows_per_chunk]
        scores = model.run(_occluded_feeds(model, chunk)).reshape(len(chunk), width)
        contributions = scores[:, :1] - scores[:, 1:]
        for i in range(len(chunk)):
            order = np.argsort(-np.abs(contributions[i]), kind="stable")[:top]
            factors = tuple(
                Factor(
                    feature=features[j].name,
                    value=_value(
                        chunk.iat[i, chunk.columns.get_loc(features[j].name)], features[j].type
                    ),
                    baseline=model.manifest.baseline[features[j].name],
                    contribution=float(contributions[i, j]),
                )
                for j in order
                if contributions[i, j] != 0.0
            )
            explanations.append(
                Explanation(model.name, model.version, float(scores[i, 0]), factors)
            )
    return explanations


def explain(
    model: LoadedModel,
    data: pd.DataFrame | Sequence[Record],
    top: int = 5,
    as_of: date | None = None,
) -> list[Explanation]:
    """Explanations of raw rows or records (cleaned by the model's feature set first)."""
    return explain_frame(model, model.features.frame(data, as_of), top)
