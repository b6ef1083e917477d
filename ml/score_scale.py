"""A model's 0-100 score: where a probability ranks among the scores of held-out rows.

Probabilities of different models are not comparable, and a classifier trained on
data where a fifth of leads convert rarely says more than 0.6 for any lead. Salesforce
shows Einstein's scores on a 1-99 scale of how a record ranks; ours do the same. At
training time :func:`reference_scale` stores the probabilities at the 0th, 1st, ...,
100th percentile of the model's predictions on its validation rows in the manifest
(``score_scale``); :func:`percentile_scores` maps a probability onto that scale by
linear interpolation: the median validation row scores 50, one better than 90 % of
them scores 90. A manifest without a scale (models registered before it existed)
scores ``100 x probability``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POINTS = 101


def reference_scale(probabilities: np.ndarray) -> list[float]:
    """The probabilities at each whole percentile (0..100) of ``probabilities``."""
    quantiles = np.quantile(np.asarray(probabilities, dtype=np.float64), np.linspace(0, 1, POINTS))
    return [float(q) for q in quantiles]


def percentile_scores(probabilities: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """Scores 0-100 of ``probabilities`` on ``scale`` (``100 x p`` without a scale).

    Tied points of the scale (a model that gives many rows the same probability)
    map to the middle of the percentiles they span, so equal probabilities get equal
    scores.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if len(scale) != POINTS:
        return 100.0 * p
    points = np.asarray(scale, dtype=np.float64)
    levels, first = np.unique(points, return_index=True)
    last = np.append(first[1:] - 1, POINTS - 1)
    middle = (first + last) / 2.0
    if len(levels) == 1:
        return np.where(p < levels[0], 0.0, np.where(p > levels[0], 100.0, 50.0))
    return np.interp(p, levels, middle, left=0.0, right=100.0)
