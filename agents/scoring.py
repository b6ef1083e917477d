"""Batch scoring for the agents: a model's probability, inputs and explanation per record.

Agents score a whole batch of facts in one batched ONNX call (with the occlusion
explanation of :mod:`ml.explain`) and hand each decision function a :class:`Score`:
everything the decision records about the model (name and version, the cleaned
features it was given, the probability, the factors), so a replay never scores again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from ml.explain import (
    attribute,
    describe_factor,
    factor_values,
    format_value,
    reasoning_text,
)
from ml.features.spec import Record
from ml.inference import LoadedModel
from ml.score_scale import percentile_scores
from schema_registry.events import Factor, FieldValue, ModelRef


@dataclass(frozen=True)
class Score:
    """One record's score: the model, its inputs, the probability (0-1) and the factors."""

    model: ModelRef
    probability: float
    features: Mapping[str, FieldValue]
    factors: tuple[Factor, ...]
    #: One line per factor (``usage_trend_30d = -0.42 (typical 0.01) increases it by 0.12``).
    descriptions: tuple[str, ...]
    reasoning: str
    #: 0-100: where the probability ranks among the model's validation rows
    #: (:mod:`ml.score_scale`); None for a model registered without a scale.
    rank: float | None = None

    @property
    def percent(self) -> float:
        """The probability on Salesforce's 0-100 scale, two decimals."""
        return round(100.0 * self.probability, 2)

    @property
    def model_score(self) -> float:
        """The model's 0-100 score: its rank if the model has a scale, else :attr:`percent`."""
        return self.rank if self.rank is not None else self.percent


def score_records(
    model: LoadedModel, records: Sequence[Record], as_of: date | None = None, top: int = 5
) -> list[Score]:
    """Scores of ``records`` (Salesforce field dicts or feature rows), in order.

    One pass over plain arrays: the records' cleaned columns
    (:meth:`~ml.features.spec.FeatureSet.columns`), their occlusion attribution
    (:func:`~ml.explain.attribute`), then one :class:`Score` per record, equal to
    building each from :func:`~ml.explain.explain_frame` of the feature frame. The
    columns also join the model's drift window.
    """
    if not records:
        return []
    features = model.features.features
    names = [feature.name for feature in features]
    columns = model.features.columns(records, as_of)
    model.drift.observe(columns, len(records))
    result = attribute(model, columns, len(records), top)
    typical = [format_value(model.manifest.baseline[name]) for name in names]
    # Cleaned columns hold float32 numbers or category strings, so the factors' values
    # (floats, None if missing, or text) are also the features' JSON-ready values.
    values = [factor_values(columns[f.name], f.type) for f in features]
    rows = list(zip(*values, strict=True))
    ref = ModelRef(name=model.name, version=str(model.version))
    scores = []
    ranks = percentile_scores(np.asarray(result.probabilities), model.manifest.score_scale)
    for probability, rank, contributions, ranked, row in zip(
        result.probabilities, ranks.tolist(), result.contributions, result.top, rows, strict=True
    ):
        descriptions = tuple(
            [describe_factor(names[j], row[j], typical[j], contributions[j]) for j in ranked]
        )
        scores.append(
            Score(
                model=ref,
                probability=min(max(probability, 0.0), 1.0),
                features=dict(zip(names, row, strict=True)),
                factors=tuple(
                    [Factor(name=names[j], contribution=round(contributions[j], 6)) for j in ranked]
                ),
                descriptions=descriptions,
                reasoning=reasoning_text(model.name, model.version, probability, descriptions),
                rank=round(rank, 2) if model.manifest.score_scale else None,
            )
        )
    return scores


def score_as_of_their_days(model: LoadedModel, dated: Sequence[tuple[date, Record]]) -> list[Score]:
    """Scores of ``dated`` records, each as of its own day, in order.

    Features relative to "today" are computed as of each fact's own date, so deciding
    it again later yields the same inputs; the records of one day share one call.
    """
    by_day: dict[date, list[int]] = {}
    for index, (day, _record) in enumerate(dated):
        by_day.setdefault(day, []).append(index)
    scores: dict[int, Score] = {}
    for day, indexes in by_day.items():
        records = [dated[i][1] for i in indexes]
        for i, score in zip(indexes, score_records(model, records, day), strict=True):
            scores[i] = score
    return [scores[i] for i in range(len(dated))]
