from __future__ import annotations

import pandas as pd

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
