from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ml.explain import Factor, explain_frame
from ml.features import CHURN
from ml.inference import LoadedModel, load_model
from ml.interventions import ALERT_CSM, RETENTION_OFFER, TRAINING, suggest
from ml.registry import Registry
from ml.synthetic import AS_OF, synthetic_dataset
from ml.training.pipeline import TrainResult


@pytest.fixture
def churn(trained: dict[str, TrainResult], registry: Registry) -> LoadedModel:
    return load_model(registry, "churn", CHURN)


def test_contributions_are_the_change_when_a_feature_returns_to_its_baseline(
    churn: LoadedModel,
) -> None:
    frame = CHURN.frame(synthetic_dataset("churn", 5, seed=4).records, AS_OF)
    explanations = explain_frame(churn, frame, top=len(CHURN.features))
    np.testing.assert_allclose(
        [e.probability for e in explanations], churn.predict_frame(frame), atol=1e-7
    )
    row = frame.iloc[[0]].copy()
    factor = explanations[0].factors[0]
    row[factor.feature] = churn.manifest.baseline[factor.feature]
    expected = explanations[0].probability - churn.predict_frame(row)[0]
    assert factor.contribution == pytest.approx(expected, abs=1e-6)
    magnitudes = [abs(f.contribution) for f in explanations[0].factors]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_a_row_at_the_baseline_has_no_factors(churn: LoadedModel) -> None:
    baseline_row = CHURN.frame([churn.manifest.baseline], AS_OF)
    (explanation,) = explain_frame(churn, baseline_row)
    assert explanation.factors == ()


def test_all_rows_are_explained_in_one_onnx_call(
    churn: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = churn.run

    def counting(feeds: dict[str, Any]) -> Any:
        calls.append(len(next(iter(feeds.values()))))
        return original(feeds)

    monkeypatch.setattr(churn, "run", counting)
    frame = CHURN.frame(synthetic_dataset("churn", 40, seed=4).records, AS_OF)
    assert len(explain_frame(churn, frame)) == 40
    assert calls == [40 * (len(CHURN.features) + 1)]


def test_falling_usage_and_late_payments_raise_churn_risk(churn: LoadedModel) -> None:
    risky = dict(churn.manifest.baseline)
    risky["usage_trend_30d"] = -0.8
    risky["late_payments_90d"] = 3
    (explanation,) = explain_frame(churn, CHURN.frame([risky], AS_OF))
    directions = {f.feature: f.direction for f in explanation.factors}
    assert directions.get("usage_trend_30d") == "increases"
    assert directions.get("late_payments_90d") == "increases"
    assert "usage_trend_30d = -0.8" in explanation.reasoning()


def test_interventions_follow_the_risk_factors() -> None:
    factors = [
        Factor("late_payments_90d", 3.0, 0.0, 0.2),
        Factor("feature_adoption_rate", 10.0, 50.0, 0.1),
        Factor("nps_score", 60.0, 20.0, -0.05),
    ]
    plan = suggest(0.85, factors)
    actions = [i.action for i in plan]
    assert actions[0] == ALERT_CSM
    assert RETENTION_OFFER in actions and TRAINING in actions
    assert "Trigger executive outreach workflow" not in actions  # NPS lowers the risk here
    assert len(actions) == len(set(actions))
    assert all(
        i.timing == "immediate" for i in plan[: actions.index(TRAINING)] if i.action != TRAINING
    )
    assert ALERT_CSM not in [i.action for i in suggest(0.3, factors)]


def test_records_are_explained_like_their_frame(churn: LoadedModel) -> None:
    from ml.explain import explain

    records = synthetic_dataset("churn", 3, seed=8).records.to_dict(orient="records")
    from_records = explain(churn, records, top=3, as_of=AS_OF)
    from_frame = explain_frame(churn, CHURN.frame(records, AS_OF), top=3)
    assert from_records == from_frame
    assert all(len(e.factors) == 3 for e in from_records)
