from __future__ import annotations

import numpy as np
import pytest

from ml.features import CHURN, FEATURE_SETS
from ml.inference import load_model
from ml.registry import Registry
from ml.synthetic import AS_OF, synthetic_dataset
from ml.training.estimators import MODEL_KINDS
from ml.training.pipeline import TrainResult


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_batch_and_single_row_predictions_agree_and_name_the_model(
    kind: str, trained: dict[str, TrainResult], registry: Registry
) -> None:
    model = load_model(registry, kind, FEATURE_SETS[kind])
    records = synthetic_dataset(kind, 25, seed=99).records.to_dict(orient="records")
    batch = model.predict(records, AS_OF)
    singles = [model.predict_one(record, AS_OF) for record in records]
    assert len(batch) == len(records)
    np.testing.assert_allclose(
        [p.probability for p in batch], [p.probability for p in singles], atol=1e-6
    )
    assert {(p.model_name, p.model_version) for p in batch + singles} == {(kind, 1)}
    assert all(0.0 <= p.probability <= 1.0 for p in batch)


def test_sessions_are_created_once_per_process(
    trained: dict[str, TrainResult], registry: Registry
) -> None:
    first = load_model(registry, "churn", CHURN)
    second = load_model(registry, "churn:1", CHURN)
    assert first.session is second.session


def test_missing_unknown_and_out_of_range_values_are_scored(
    trained: dict[str, TrainResult], registry: Registry
) -> None:
    model = load_model(registry, "churn", CHURN)
    empty = model.predict_one({}, AS_OF).probability
    odd = model.predict_one(
        {"Plan_Tier__c": "Platinum", "Industry": "Space mining", "NPS_Score__c": "n/a"}, AS_OF
    )
    assert 0.0 < empty < 1.0 and 0.0 < odd.probability < 1.0
    huge = model.predict_one({"NPS_Score__c": 10_000}, AS_OF).probability
    top = model.predict_one({"NPS_Score__c": 100}, AS_OF).probability
    assert huge == top


def test_a_loaded_model_is_a_scorer(trained: dict[str, TrainResult], registry: Registry) -> None:
    from ml.inference import Scorer

    scorer: Scorer = load_model(registry, "win")
    assert scorer.predict_one({}).model_name == "win"
