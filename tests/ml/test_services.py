from __future__ import annotations

import pytest

from ml.errors import FeatureMismatchError
from ml.registry import Registry
from ml.services import ChurnPredictor, LeadScorer, UpsellDetector, WinProbability
from ml.synthetic import AS_OF, synthetic_dataset
from ml.training.pipeline import TrainResult


def _record(kind: str) -> dict[str, object]:
    return synthetic_dataset(kind, 1, seed=21).records.to_dict(orient="records")[0]


def test_churn_predictor(trained: dict[str, TrainResult], registry: Registry) -> None:
    predictor = ChurnPredictor.from_registry(registry, as_of=AS_OF)
    account = _record("churn")
    probability = predictor.predict(account)
    assert 0 < probability < 1
    assert predictor.score(account).model_version == 1
    assert all(f.contribution > 0 for f in predictor.get_risk_factors(account))
    plan = predictor.suggest_interventions(account, threshold=0.0)
    assert plan[0].action == "Alert Customer Success Manager"


def test_lead_scorer_blends_einstein_with_the_model(
    trained: dict[str, TrainResult], registry: Registry
) -> None:
    scorer = LeadScorer.from_registry(registry, as_of=AS_OF)
    lead = _record("lead")
    model_only = scorer.enhance_score({k: v for k, v in lead.items() if k != "Einstein_Score"})
    blended = scorer.enhance_score({**lead, "Einstein_Score": 90})
    assert blended == pytest.approx(0.4 * 90 + 0.6 * model_only, abs=0.02)
    explained = scorer.explain_score({**lead, "Einstein_Score": 90})
    assert explained["score"] == blended
    assert explained["model_name"] == "lead" and explained["model_version"] == 1
    assert explained["factors"] and "lead v1" in explained["reasoning"]


def test_upsell_and_win_services(trained: dict[str, TrainResult], registry: Registry) -> None:
    upsell = UpsellDetector.from_registry(registry, as_of=AS_OF)
    assert upsell.is_candidate(_record("upsell"), threshold=0.0)
    win = WinProbability.from_registry(registry, as_of=AS_OF)
    opportunity = _record("win")
    assert 0 < win.predict(opportunity) < 1
    assert all(f.contribution < 0 for f in win.get_risk_factors(opportunity))


def test_a_service_refuses_a_model_trained_on_other_inputs(
    trained: dict[str, TrainResult], registry: Registry
) -> None:
    with pytest.raises(FeatureMismatchError, match="refusing to serve"):
        ChurnPredictor.from_registry(registry, "lead:1")
