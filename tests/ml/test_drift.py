from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import drift
from ml.features import CHURN
from ml.synthetic import AS_OF, synthetic_dataset


def _frame(seed: int) -> pd.DataFrame:
    return CHURN.frame(synthetic_dataset("churn", 4000, seed=seed).records, AS_OF)


def test_psi_is_small_for_the_same_population_and_large_for_a_shift() -> None:
    reference = drift.reference(CHURN, _frame(1))
    same = drift.psi(CHURN, reference, _frame(2))
    assert max(same.values()) < 0.05
    shifted = _frame(2)
    shifted["usage_trend_30d"] -= 0.5
    shifted["plan_tier"] = "Unheard-of tier"
    moved = drift.psi(CHURN, reference, shifted)
    assert moved["usage_trend_30d"] > 0.25
    assert moved["plan_tier"] > 0.25
    assert moved["nps_score"] == same["nps_score"]


def test_missing_values_count_as_their_own_bin() -> None:
    reference = drift.reference(CHURN, _frame(1))
    frame = _frame(2)
    frame["nps_score"] = float("nan")
    assert drift.psi(CHURN, reference, frame)["nps_score"] > 1.0


def _columns(seed: int, rows: int = 4000) -> dict[str, np.ndarray]:
    records = synthetic_dataset("churn", rows, seed=seed).records.to_dict("records")
    return CHURN.columns(records, AS_OF)


def test_the_window_gives_the_psi_of_the_frame_it_holds() -> None:
    reference = drift.reference(CHURN, _frame(1))
    window = drift.DriftWindow(CHURN, reference, capacity=4000)
    window.observe(_columns(2), 4000)
    expected = drift.psi(CHURN, reference, _frame(2))
    observed = window.psi()
    assert observed is not None
    assert observed == pytest.approx(expected, abs=1e-9)


def test_the_window_keeps_only_the_newest_rows() -> None:
    reference = drift.reference(CHURN, _frame(1))
    window = drift.DriftWindow(CHURN, reference, capacity=1000)
    shifted = _columns(2, 1000)
    shifted["plan_tier"] = np.full(1000, "Unheard-of tier", dtype=object)
    window.observe(shifted, 1000)
    moved = window.psi()
    assert moved is not None and moved["plan_tier"] > 0.25
    for seed in (3, 4):  # a drift that has passed leaves the window
        window.observe(_columns(seed, 500), 500)
    settled = window.psi()
    assert window.rows == 1000
    assert settled is not None and settled["plan_tier"] < 0.05


def test_too_few_rows_give_no_index() -> None:
    reference = drift.reference(CHURN, _frame(1))
    window = drift.DriftWindow(CHURN, reference, min_rows=200)
    window.observe(_columns(2, 150), 150)
    assert window.psi() is None
    window.observe(_columns(3, 50), 50)
    assert window.psi() is not None
