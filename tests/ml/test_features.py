from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.features import CHURN, LEAD, MISSING, WIN, Feature, FeatureSet, FeatureType, signals
from ml.features.spec import clean_category, clean_number

AS_OF = date(2026, 3, 1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3, 3.0),
        ("1,234.5", 1234.5),
        (" 7 ", 7.0),
        (True, 1.0),
        ("", math.nan),
        (" ", math.nan),
        ("n/a", math.nan),
        (None, math.nan),
        (math.inf, math.nan),
        ([1], math.nan),
    ],
)
def test_numbers_are_parsed_or_missing(raw: object, expected: float) -> None:
    value = clean_number(raw)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_numbers_are_clipped_to_the_feature_range() -> None:
    assert clean_number(-5, 0, 100) == 0.0
    assert clean_number(250, 0, 100) == 100.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, MISSING), ("", MISSING), (" Gold ", "Gold"), (2.0, "2"), (False, "false")],
)
def test_categories_are_normalised(raw: object, expected: str) -> None:
    assert clean_category(raw) == expected


values = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.text(max_size=6),
    st.sampled_from(["12", "1,000", " 3.5", "n/a", "Enterprise", ""]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(values, values), min_size=1, max_size=5))
def test_batch_and_single_row_encodings_agree(rows: list[tuple[object, object]]) -> None:
    features = FeatureSet(
        "t",
        (
            Feature("x", FeatureType.NUMERIC, "x", low=-100, high=100),
            Feature("c", FeatureType.CATEGORICAL, "c"),
        ),
    )
    records = [{"x": x, "c": c} for x, c in rows]
    batch = features.feeds(features.frame(records, AS_OF))
    for i, record in enumerate(records):
        single = features.row_feeds(record, AS_OF)
        np.testing.assert_array_equal(single["x"][0], batch["x"][i])
        assert single["c"][0, 0] == batch["c"][i, 0]


def test_features_are_read_by_salesforce_alias_and_derived() -> None:
    account = {
        "Monthly_Active_Users__c": 40,
        "Licensed_Seats__c": 50,
        "Daily_Active_Users": [10] * 15 + [5] * 15,
        "Contract_Renewal_Date__c": "2026-03-31",
        "Payments": [
            {"due": "2026-02-01", "paid": "2026-02-10"},
            {"due": "2026-01-01", "paid": "2025-12-30"},
        ],
        "Customer_Since__c": "2025-03-01",
    }
    feeds = CHURN.row_feeds(account, AS_OF)
    assert feeds["monthly_active_users"][0, 0] == 40
    assert feeds["seat_utilization"][0, 0] == pytest.approx(0.8)
    assert feeds["usage_trend_30d"][0, 0] == pytest.approx(-0.5)
    assert feeds["days_to_renewal"][0, 0] == 30
    assert feeds["late_payments_90d"][0, 0] == 1
    assert feeds["tenure_months"][0, 0] == pytest.approx(12.0, abs=0.1)
    assert math.isnan(feeds["nps_score"][0, 0])
    assert feeds["plan_tier"][0, 0] == MISSING


def test_lead_derivations() -> None:
    lead = {
        "Title": "VP of Sales",
        "Tech_Stack__c": "AWS;Kafka;SAP",
        "Decision_Makers__c": '["a", "b"]',
    }
    feeds = LEAD.row_feeds(lead, AS_OF)
    assert feeds["title_seniority"][0, 0] == "VP"
    assert feeds["tech_stack_count"][0, 0] == 3
    assert feeds["decision_makers_count"][0, 0] == 2
    assert signals.title_seniority({"Title": "Chief Executive Officer"}, AS_OF) == "C-Level"
    assert signals.title_seniority({"Title": "Data Analyst"}, AS_OF) == "Individual"


def test_stage_history_derivations() -> None:
    history = [
        {"StageName": "Prospecting", "CreatedDate": "2026-01-01"},
        {"StageName": "Qualification", "CreatedDate": "2026-01-10"},
        {"StageName": "Prospecting", "CreatedDate": "2026-01-20"},
        {"StageName": "Needs Analysis", "CreatedDate": "2026-02-19"},
    ]
    feeds = WIN.row_feeds({"Stage_History": history}, AS_OF)
    assert feeds["days_in_stage"][0, 0] == 10
    assert feeds["stage_regressions"][0, 0] == 1


def test_duplicate_feature_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="repeats"):
        FeatureSet(
            "bad",
            (Feature("a", FeatureType.NUMERIC, ""), Feature("a", FeatureType.CATEGORICAL, "")),
        )


def test_absent_features_are_listed() -> None:
    table = pd.DataFrame({"Monthly_Active_Users__c": [1]})
    absent = CHURN.absent_from(table.columns)
    assert "monthly_active_users" not in absent
    assert "seat_utilization" not in absent  # derived
    assert "nps_score" in absent


def test_currency_and_percent_text_is_numeric() -> None:
    assert clean_number("$1,250.50") == 1250.5
    assert clean_number("45%") == 45.0
    assert math.isnan(clean_number("USD"))


def test_row_values_are_the_cleaned_inputs_ready_for_an_event() -> None:
    values = CHURN.row_values({"Monthly_Active_Users__c": "1,200", "NPS_Score__c": 500}, AS_OF)
    assert values["monthly_active_users"] == 1200.0
    assert values["nps_score"] == 100.0
    assert values["feature_adoption_rate"] is None
    assert values["plan_tier"] == MISSING
    assert list(values) == CHURN.names
