"""The 0-100 percentile score of a probability against validation rows."""

from __future__ import annotations

import numpy as np
import pytest

from ml.score_scale import POINTS, percentile_scores, reference_scale


def test_a_probability_scores_the_share_of_validation_rows_below_it() -> None:
    validation = np.linspace(0.10, 0.60, 1001)  # a model that never says more than 0.6
    scale = reference_scale(validation)
    assert len(scale) == POINTS and scale[0] == 0.10 and scale[-1] == 0.60
    scores = percentile_scores(np.array([0.10, 0.35, 0.55, 0.60, 0.05, 0.95]), scale)
    assert scores.tolist() == pytest.approx([0.0, 50.0, 90.0, 100.0, 0.0, 100.0])


def test_scores_keep_the_order_of_probabilities() -> None:
    rng = np.random.default_rng(3)
    scale = reference_scale(rng.beta(2, 5, 5000))
    probabilities = np.sort(rng.uniform(0, 1, 500))
    scores = percentile_scores(probabilities, scale)
    assert np.all(np.diff(scores) >= 0)
    assert scores.min() >= 0.0 and scores.max() <= 100.0


def test_tied_probabilities_score_the_middle_of_the_percentiles_they_span() -> None:
    validation = np.array([0.2] * 60 + [0.5] * 40)
    scale = reference_scale(validation)
    low, high = percentile_scores(np.array([0.2, 0.5]), scale)
    assert low == pytest.approx(29.5, abs=1.0) and high == pytest.approx(79.5, abs=1.0)


def test_without_a_scale_the_score_is_the_probability_in_percent() -> None:
    assert percentile_scores(np.array([0.123, 0.9]), []).tolist() == pytest.approx([12.3, 90.0])
