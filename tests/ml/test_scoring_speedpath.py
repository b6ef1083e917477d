"""The fast scoring path gives exactly what the straightforward per-row path gave.

``_reference_*`` below are the former implementations, kept verbatim in spirit: the
feature frame built from ``pd.DataFrame(records)`` with derivations fed
``to_dict(orient="records")`` rows, the per-row, per-factor explanation loop reading the
frame cell by cell, and :func:`agents.scoring.score_records` built on both. The fast
path (:meth:`FeatureSet.columns`, :func:`ml.explain.attribute`, the new
``score_records``) must reproduce their output bit for bit: same probabilities, same
factors in the same order, same feature values, same texts.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agents.scoring import Score, score_records
from ml.explain import Explanation, Factor, explain_frame
from ml.features import FEATURE_SETS, MISSING
from ml.features.spec import (
    Feature,
    FeatureSet,
    FeatureType,
    FieldDerivation,
    Record,
    _clean_number_column,
    clean_category,
)
from ml.inference import LoadedModel, load_model
from ml.registry import Registry
from ml.score_scale import percentile_scores
from ml.training.estimators import MODEL_KINDS
from ml.training.pipeline import TrainResult
from schema_registry.events import Factor as EventFactor
from schema_registry.events import FieldValue, ModelRef
from simulator import load

AS_OF = date(2026, 3, 1)


# --- the former implementation -------------------------------------------------------


def _reference_frame(features: FeatureSet, records: Sequence[Record], day: date) -> pd.DataFrame:
    table = pd.DataFrame(list(records))
    columns: dict[str, Any] = {}
    for feature in features.features:
        key = next((k for k in feature.keys if k in table.columns), None)
        if key is not None:
            raw = table[key]
        elif feature.derive is not None:
            rows = table.to_dict(orient="records")
            raw = pd.Series([feature.derive(r, day) for r in rows], index=table.index, dtype=object)
        else:
            raw = pd.Series([None] * len(table), index=table.index, dtype=object)
        if feature.type is FeatureType.NUMERIC:
            columns[feature.name] = _clean_number_column(raw, feature.low, feature.high)
        else:
            columns[feature.name] = np.array([clean_category(v) for v in raw], dtype=object)
    return pd.DataFrame(columns, index=table.index)


def _reference_occluded_feeds(model: LoadedModel, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    width = len(model.features.features) + 1
    feeds = model.features.feeds(frame)
    for j, feature in enumerate(model.features.features):
        column = np.repeat(feeds[feature.name], width, axis=0)
        column[j + 1 :: width] = model.manifest.baseline[feature.name]
        feeds[feature.name] = column
    return feeds


def _reference_value(raw: Any, kind: FeatureType) -> float | str | None:
    if kind is FeatureType.NUMERIC:
        number = float(raw)
        return None if math.isnan(number) else number
    return str(raw)


def _reference_explain(
    model: LoadedModel, frame: pd.DataFrame, top: int = 5, chunk_rows: int = 50_000
) -> list[Explanation]:
    features = model.features.features
    width = len(features) + 1
    rows_per_chunk = max(1, chunk_rows // width)
    explanations: list[Explanation] = []
    for start in range(0, len(frame), rows_per_chunk):
        chunk = frame.iloc[start : start + rows_per_chunk]
        scores = model.run(_reference_occluded_feeds(model, chunk)).reshape(len(chunk), width)
        contributions = scores[:, :1] - scores[:, 1:]
        for i in range(len(chunk)):
            order = np.argsort(-np.abs(contributions[i]), kind="stable")[:top]
            factors = tuple(
                Factor(
                    feature=features[j].name,
                    value=_reference_value(
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


def _reference_plain(value: object) -> FieldValue:
    if value is None:
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        number = float(value)
        return None if math.isnan(number) else number
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return None if math.isnan(number) else number


def _reference_scores(
    model: LoadedModel, records: Sequence[Record], day: date, top: int = 5
) -> list[Score]:
    if not records:
        return []
    frame = _reference_frame(model.features, records, day)
    explanations = _reference_explain(model, frame, top)
    names = [feature.name for feature in model.features.features]
    columns = [frame[name].tolist() for name in names]
    ref = ModelRef(name=model.name, version=str(model.version))
    return [
        Score(
            model=ref,
            probability=min(max(explanation.probability, 0.0), 1.0),
            features={name: _reference_plain(columns[j][row]) for j, name in enumerate(names)},
            factors=tuple(
                EventFactor(name=f.feature, contribution=round(f.contribution, 6))
                for f in explanation.factors
            ),
            descriptions=tuple(f.describe() for f in explanation.factors),
            reasoning=explanation.reasoning(),
            rank=round(
                float(
                    percentile_scores(
                        np.array([explanation.probability]), model.manifest.score_scale
                    )[0]
                ),
                2,
            )
            if model.manifest.score_scale
            else None,
        )
        for row, explanation in enumerate(explanations)
    ]


# --- records -------------------------------------------------------------------------

_NOW = datetime(2026, 2, 20, 9, 30, tzinfo=UTC)
_ODD = [None, "", "  ", "n/a", math.nan, math.inf, -math.inf, True, False, [1, 2], {"a": 1}]
_NUMBERS = [
    0,
    7,
    -5,
    3.5,
    1e15,
    -1e15,
    2**60 + 1,
    "1,234.5",
    " 42 ",
    "$12",
    "45%",
    "€7",
    "12abc",
    np.float32(2.5),
    np.int64(9),
]
_DATES = [
    "2026-02-27",
    "2025-01-15T10:00:00Z",
    "2026-02-20T09:30:00.000+0000",
    "2024-12-31T23:59:59+05:00",
    " 2026-01-01 ",
    "2031-06-01",
    "1990-01-01",
    "not a date",
    "",
    None,
    date(2025, 11, 5),
    datetime(2026, 2, 1, 12, 0),
    _NOW,
    17,
]
_TEXT = [
    "Web",
    " Web ",
    "Partner Referral",
    "Carrier Pigeon",
    "Technology",
    "Healthcare",
    "United States",
    "Atlantis",
    "",
    " ",
    None,
    math.nan,
    3,
    2.0,
    2.5,
    True,
    "Ünïcödé",
]
_TITLES = [
    "CEO",
    "Chief Technology Officer",
    "VP of Sales",
    "svp engineering",
    "Director, IT",
    "Head of Data",
    "Engineering Manager",
    "Team Lead",
    "Data Analyst",
    "",
    None,
    42,
]
_STACKS = ["AWS;Kafka;SAP", "AWS", "a;;b;", '["x", "y"]', "[broken", ["Go", "Rust"], "", None, 5]


def _pick(rng: random.Random, pool: Sequence[Any], odd: float = 0.25) -> Any:
    return rng.choice(_ODD) if rng.random() < odd else rng.choice(pool)


def _history(rng: random.Random) -> Any:
    if rng.random() < 0.2:
        return rng.choice([None, 4.5, []])
    stages = ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Lost?"]
    return [
        {
            "StageName": rng.choice(stages),
            "CreatedDate": rng.choice(_DATES[:7]) if rng.random() > 0.1 else None,
        }
        for _ in range(rng.randint(1, 5))
    ]


def _usage(rng: random.Random) -> Any:
    if rng.random() < 0.2:
        return rng.choice([None, [], [3], (0,) * 30, 7])
    return [rng.randint(0, 40) for _ in range(30)]


def _payments(rng: random.Random) -> Any:
    if rng.random() < 0.2:
        return rng.choice([None, [], 4])
    return [
        {"due": rng.choice(_DATES[:7]), "paid": rng.choice([*_DATES[:7], None])}
        for _ in range(rng.randint(0, 4))
    ]


def _varied(kind: str, rng: random.Random) -> dict[str, Any]:
    """One record with missing, malformed, out-of-range and unknown values."""
    if kind == "lead":
        fields: dict[str, Any] = {
            "NumberOfEmployees": _pick(rng, _NUMBERS),
            "AnnualRevenue": _pick(rng, [*_NUMBERS, 5e12]),
            "Estimated_Budget__c": _pick(rng, _NUMBERS),
            "Tech_Stack__c": rng.choice(_STACKS),
            "Decision_Makers__c": rng.choice(["Ann\nBob", '["a"]', "", None]),
            "Web_Visits_30d__c": _pick(rng, _NUMBERS),
            "Email_Opens_30d__c": _pick(rng, _NUMBERS),
            "CreatedDate": rng.choice(_DATES),
            "LeadSource": _pick(rng, _TEXT),
            "Industry": _pick(rng, _TEXT),
            "Title": rng.choice(_TITLES),
            "Country": _pick(rng, _TEXT),
            "content_downloads_30d": _pick(rng, _NUMBERS),  # by feature name, not alias
            "Einstein_Lead_Score__c": float(rng.randint(5, 99)),
        }
    elif kind in ("churn", "upsell"):
        fields = {
            # seat_utilization divides these two as they are, so they stay numbers here.
            "Monthly_Active_Users__c": rng.choice([*_NUMBERS[:7], None, math.nan, True]),
            "Licensed_Seats__c": rng.choice([0, 10, 250, None, 0.5, math.nan, np.int64(8)]),
            "Daily_Active_Users": _usage(rng),
            "Feature_Adoption_Rate__c": _pick(rng, [*_NUMBERS, 140]),
            "Support_Ticket_Count_30d__c": _pick(rng, _NUMBERS),
            "Payments": _payments(rng),
            "Contract_Renewal_Date__c": rng.choice(_DATES),
            "Usage_Score__c": _pick(rng, _NUMBERS),
            "NPS_Score__c": _pick(rng, [*_NUMBERS, -300, 300]),
            "Competitor_Mentions_30d__c": _pick(rng, _NUMBERS),
            "Customer_Since__c": rng.choice(_DATES),
            "Annual_Contract_Value__c": _pick(rng, _NUMBERS),
            "Plan_Tier__c": _pick(rng, ["Starter", "Growth", "Enterprise", "Platinum"]),
            "Industry": _pick(rng, _TEXT),
            "Engagement_Level__c": _pick(rng, ["High", "Medium", "Low", "Extreme"]),
            "Api_Calls_30d__c": _pick(rng, _NUMBERS),
            "Storage_Utilization__c": _pick(rng, _NUMBERS),
            "Products_Owned__c": _pick(rng, _NUMBERS),
            "Employee_Growth_12m__c": _pick(rng, _NUMBERS),
        }
    else:
        fields = {
            "Amount": _pick(rng, _NUMBERS),
            "Stage_History": _history(rng),
            "Close_Date_Pushes__c": _pick(rng, _NUMBERS),
            "CloseDate": rng.choice(_DATES),
            "CreatedDate": rng.choice(_DATES),
            "Competitor_Count__c": _pick(rng, _NUMBERS),
            "Discount_Percent__c": _pick(rng, [*_NUMBERS, 250]),
            "Activities_30d__c": _pick(rng, _NUMBERS),
            "Stakeholders_Engaged__c": _pick(rng, _NUMBERS),
            "StageName": _pick(rng, ["Prospecting", "Negotiation/Review", "Closed Won", "Limbo"]),
            "LeadSource": _pick(rng, _TEXT),
            "Type": _pick(rng, ["New Business", "Existing Business", "Barter"]),
            "Industry": _pick(rng, _TEXT),
        }
    # Some records lack some fields entirely (a table of them holds NaN there).
    return {k: v for k, v in fields.items() if rng.random() > 0.1}


def _workload(kind: str, count: int, seed: int = 11) -> list[dict[str, Any]]:
    """Realistic records, as the simulator's workload generator writes them."""
    rng = random.Random(seed)
    if kind == "lead":
        return [
            {
                **fields,
                "Einstein_Lead_Score__c": float(rng.randint(5, 99)),
                "CreatedDate": (_NOW - timedelta(days=rng.randint(0, 400))).isoformat(),
            }
            for fields in load.leads(rng, count)
        ]
    if kind in ("churn", "upsell"):
        return load.accounts(rng, count)
    return load.opportunities(rng, count, [])


def _typed(kind: str, seed: int) -> list[dict[str, Any]]:
    """Columns pandas types specially: all bool, ints with gaps, datetimes, one key in one record."""
    rng = random.Random(seed)
    records = _workload(kind, 40, seed)
    for index, record in enumerate(records):
        for key in list(record)[:6]:
            record[key] = rng.choice(
                [True, False, None, index, float(index), _NOW - timedelta(days=index)]
            )
        if index % 5 == 0:
            record["Title"] = None  # None among text: pandas stores NaN
        if index % 7 == 0:
            record.pop("Industry", None)
    records[3]["Decision_Makers__c"] = "A;B"  # present in one record only
    records[4]["Monthly_Active_Users__c"] = None
    records[5]["Licensed_Seats__c"] = 10
    return records


def _gaps(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Plain records with fields left out or set to None here and there."""
    rng = random.Random(seed)
    return [
        {k: None if rng.random() < 0.1 else v for k, v in record.items() if rng.random() > 0.15}
        for record in records
    ]


def _batches(kind: str) -> dict[str, list[Any]]:
    rng = random.Random(5)
    varied = [_varied(kind, rng) for _ in range(300)]
    return {
        "workload": _workload(kind, 200),
        "workload with gaps": _gaps(_workload(kind, 200), 8),
        "varied": varied,
        "typed": _typed(kind, 3),
        "one varied record": varied[:1],
        "other mappings": [
            *(MappingProxyType(record) for record in varied[:20]),
            *(defaultdict(lambda: "default", record) for record in varied[20:40]),
        ],
        "uniform fields": [dict.fromkeys(varied[0], value) for value in (1, None, 2.5, True, 0)],
        "feature rows": [dict(zip(FEATURE_SETS[kind].names, (1, "a") * 10, strict=False))],
    }


_CASES = [(kind, batch) for kind in MODEL_KINDS for batch in _batches(kind)]


# --- tests ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(trained: dict[str, TrainResult], registry: Registry) -> dict[str, LoadedModel]:
    return {kind: load_model(registry, kind, FEATURE_SETS[kind]) for kind in MODEL_KINDS}


@pytest.mark.parametrize(("kind", "batch"), _CASES)
def test_feature_frame_equals_the_pandas_table_frame(kind: str, batch: str) -> None:
    features = FEATURE_SETS[kind]
    records = _batches(kind)[batch]
    expected = _reference_frame(features, records, AS_OF)
    built = features.frame(records, AS_OF)
    pd.testing.assert_frame_equal(built, expected, check_exact=True)
    pd.testing.assert_frame_equal(features.frame(iter(records), AS_OF), expected)
    columns = features.columns(records, AS_OF)
    assert list(columns) == features.names
    for name, column in columns.items():
        np.testing.assert_array_equal(column, expected[name].to_numpy())


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_feature_frame_of_a_table_is_unchanged(kind: str) -> None:
    features = FEATURE_SETS[kind]
    records = _batches(kind)["varied"]
    table = pd.DataFrame(records)
    pd.testing.assert_frame_equal(
        features.frame(table, AS_OF), _reference_frame(features, records, AS_OF), check_exact=True
    )


@pytest.mark.parametrize(("kind", "batch"), _CASES)
def test_scores_equal_the_per_row_reference(
    kind: str, batch: str, models: dict[str, LoadedModel]
) -> None:
    model = models[kind]
    records = _batches(kind)[batch]
    keys = [sorted(record) for record in records]
    expected = _reference_scores(model, records, AS_OF)
    scores = score_records(model, records, AS_OF)
    assert len(scores) == len(records)
    for index, (score, want) in enumerate(zip(scores, expected, strict=True)):
        assert score == want, f"record {index}: {records[index]}"
    assert any(score.factors for score in scores)
    # Records are read, never written (a defaultdict grows no keys).
    assert [sorted(record) for record in records] == keys


@pytest.mark.parametrize("top", [0, 1, 3, 40])
def test_scores_equal_the_reference_for_any_number_of_factors(
    top: int, models: dict[str, LoadedModel]
) -> None:
    records = _batches("lead")["varied"][:60]
    assert score_records(models["lead"], records, AS_OF, top) == _reference_scores(
        models["lead"], records, AS_OF, top
    )


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_explanations_equal_the_per_row_reference(
    kind: str, models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models[kind]
    frame = FEATURE_SETS[kind].frame(_batches(kind)["varied"], AS_OF)
    assert explain_frame(model, frame, top=4) == _reference_explain(model, frame, top=4)
    # Several ONNX chunks: rows are attributed chunk by chunk, in order.
    monkeypatch.setattr("ml.explain._CHUNK_ROWS", 100)
    assert explain_frame(model, frame) == _reference_explain(model, frame, chunk_rows=100)


def test_no_records_give_no_scores_and_an_empty_frame(models: dict[str, LoadedModel]) -> None:
    assert score_records(models["lead"], [], AS_OF) == []
    for features in FEATURE_SETS.values():
        pd.testing.assert_frame_equal(
            features.frame([], AS_OF), _reference_frame(features, [], AS_OF)
        )


def test_a_field_missing_from_some_records_reads_as_the_table_reads_it() -> None:
    """What a derivation sees of a field some records lack: NaN, as ``to_dict`` gave it."""
    lead = FEATURE_SETS["lead"]
    records: list[dict[str, Any]] = [{"Decision_Makers__c": "A\nB\nC"}, {"Title": "CEO"}]
    columns = lead.columns(records, AS_OF)
    # A record lacking the field has no count, whatever else is in the batch.
    assert columns["decision_makers_count"][0] == 3.0
    assert math.isnan(columns["decision_makers_count"][1])
    assert columns["title_seniority"].tolist() == [MISSING, "C-Level"]
    assert math.isnan(columns["days_since_created"][0])


def test_field_derivations_read_one_field() -> None:
    derivation = FieldDerivation("Title", lambda value, _day: f"{value}!")
    assert derivation({"Title": "CEO", "Other": 1}, AS_OF) == "CEO!"
    assert derivation({}, AS_OF) == "None!"
    since = FEATURE_SETS["win"].features[FEATURE_SETS["win"].names.index("age_days")].derive
    assert since is not None
    assert since({"CreatedDate": "2026-02-19T23:00:00Z"}, AS_OF) == 10


def test_a_derivation_reading_the_whole_record_sees_the_table_row() -> None:
    """Derivations that are not :class:`FieldDerivation` get the table's row, keys and all."""

    def describe(record: Record, _day: date) -> str:
        try:
            record["Nope"]
            raised = False
        except KeyError:
            raised = True
        return f"{len(record)} {'Nope' in record} {raised} {sorted(record.items(), key=str)!r}"

    features = FeatureSet(
        "whole",
        (
            Feature("row", FeatureType.CATEGORICAL, "the row", derive=describe),
            Feature(
                "size",
                FeatureType.NUMERIC,
                "keys",
                derive=lambda r, _d: len(list(r)) + (r.get("n") or 0),
            ),
        ),
    )
    records: list[dict[str, Any]] = [
        {"a": "x", "n": 1},
        {"n": None, "b": _NOW},
        {"a": None, "b": None, "c": [1]},
    ]
    pd.testing.assert_frame_equal(
        features.frame(records, AS_OF), _reference_frame(features, records, AS_OF)
    )


def test_mixed_datetimes_fail_as_they_did() -> None:
    """A date field of datetimes with gaps becomes NaT in a table, which derivations reject."""
    records: list[dict[str, Any]] = [{"CreatedDate": _NOW}, {"CreatedDate": None}]
    with pytest.raises(TypeError):
        _reference_frame(FEATURE_SETS["lead"], records, AS_OF)
    with pytest.raises(TypeError):
        FEATURE_SETS["lead"].frame(records, AS_OF)


def test_a_record_scores_the_same_alone_and_in_any_batch(
    models: dict[str, LoadedModel],
) -> None:
    """A redelivered fact may land in another batch: its score must not change with it."""
    lone = {"Title": "CEO", "NumberOfEmployees": 300, "Licensed_Seats__c": 10}
    others: list[dict[str, Any]] = [
        {"Decision_Makers__c": "A\nB", "Tech_Stack__c": "AWS;Kafka", "Monthly_Active_Users__c": 9},
        {"Title": "Engineer", "Licensed_Seats__c": 5, "Monthly_Active_Users__c": 4},
    ]
    for kind in ("lead", "upsell"):
        (alone,) = score_records(models[kind], [lone], AS_OF)
        together = score_records(models[kind], [*others, lone], AS_OF)[-1]
        assert together == alone
