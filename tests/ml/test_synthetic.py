from __future__ import annotations

import pandas as pd
import pytest

from ml.synthetic import synthetic_dataset


@pytest.mark.parametrize("model", ["churn", "upsell", "lead", "win"])
def test_same_seed_same_data_other_seed_other_data(model: str) -> None:
    a = synthetic_dataset(model, 300, seed=5).records
    b = synthetic_dataset(model, 300, seed=5).records
    c = synthetic_dataset(model, 300, seed=6).records
    pd.testing.assert_frame_equal(a, b)
    numeric = a.select_dtypes("number").columns
    assert not a[numeric].equals(c[numeric])


@pytest.mark.parametrize(
    ("model", "low", "high"),
    [("churn", 0.1, 0.35), ("upsell", 0.08, 0.3), ("lead", 0.1, 0.35), ("win", 0.2, 0.5)],
)
def test_outcome_rates_are_in_the_documented_range(model: str, low: float, high: float) -> None:
    dataset = synthetic_dataset(model, 5000, seed=1)
    assert low < dataset.records[dataset.target].mean() < high


def test_planted_signal_is_present_but_noisy() -> None:
    leads = synthetic_dataset("lead", 8000, seed=2).records
    by_source = leads.groupby("LeadSource")["Converted"].mean()
    assert by_source["Referral"] > by_source["Cold Call"] + 0.1
    accounts = synthetic_dataset("churn", 8000, seed=2).records
    late = accounts["Payments"].map(
        lambda p: sum(x["paid"] is None or x["paid"] > x["due"] for x in p)
    )
    assert accounts.loc[late >= 2, "Churned"].mean() > accounts.loc[late == 0, "Churned"].mean()
    assert 0.0 < accounts.loc[late >= 2, "Churned"].mean() < 1.0


def test_data_carries_missing_and_out_of_range_values() -> None:
    records = synthetic_dataset("churn", 5000, seed=3).records
    assert records["NPS_Score__c"].isna().any()
    assert (records["Monthly_Active_Users__c"] < 0).any()
