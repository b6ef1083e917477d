"""The model services of the specification: churn, lead scoring, upsell and win probability.

Each service wraps the promoted version of its model, loaded once and verified against
the service's feature definition (a model trained on other inputs is refused). Methods
take a feature row or a Salesforce record dict (looking records up is the streaming
side's job) and every result names the model and version that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, ClassVar, Self

from ml.explain import Explanation, Factor, explain_frame
from ml.features.definitions import FEATURE_SETS
from ml.features.spec import Record
from ml.inference import LoadedModel, Prediction, load_model
from ml.interventions import HIGH_RISK, Intervention, suggest
from ml.registry import Registry

EINSTEIN_WEIGHT = 0.4
EINSTEIN_KEYS = ("einstein_score", "Einstein_Score", "Einstein_Score__c")


class ModelService:
    """A promoted model served with its feature definition."""

    kind: ClassVar[str]

    def __init__(self, model: LoadedModel, as_of: date | None = None) -> None:
        """Serve an already loaded model; ``as_of`` fixes the date of derived features."""
        self.model = model
        self.as_of = as_of

    @classmethod
    def from_registry(
        cls, registry: Registry, ref: str | None = None, as_of: date | None = None
    ) -> Self:
        """Load ``ref`` (default: the promoted version of this service's model)."""
        return cls(load_model(registry, ref or cls.kind, FEATURE_SETS[cls.kind]), as_of)

    def score(self, record: Record) -> Prediction:
        """Probability of one record, with model name and version."""
        return self.model.predict_one(record, self.as_of)

    def score_many(self, records: Sequence[Record]) -> list[Prediction]:
        """Probabilities of many records in one ONNX call."""
        return self.model.predict(records, self.as_of)

    def explain(self, record: Record, top: int = 5) -> Explanation:
        """Probability and the top contributing features of one record."""
        frame = self.model.features.frame([record], self.as_of)
        return explain_frame(self.model, frame, top)[0]


class ChurnPredictor(ModelService):
    """Churn probability of an account, its risk factors and the retention plan."""

    kind = "churn"

    def predict(self, account: Record) -> float:
        """Churn probability (0-1)."""
        return self.score(account).probability

    def get_risk_factors(self, account: Record, top: int = 5) -> list[Factor]:
        """The factors that raise this account's churn risk, strongest first."""
        return [f for f in self.explain(account, top).factors if f.contribution > 0]

    def suggest_interventions(
        self, account: Record, threshold: float = HIGH_RISK
    ) -> list[Intervention]:
        """SPEC Flow 4 actions for this account, immediate ones first."""
        explanation = self.explain(account, top=len(self.model.features.features))
        return suggest(explanation.probability, explanation.factors, threshold)


class LeadScorer(ModelService):
    """The enhanced lead score: Einstein's score blended with the random forest's."""

    kind = "lead"

    def enhance_score(self, lead: Record) -> float:
        """``0.4 * Einstein + 0.6 * model`` on 0-100 (the model alone without an Einstein score)."""
        return self._blend(lead, self.score(lead).probability)

    def _blend(self, lead: Record, probability: float) -> float:
        einstein = next((lead[k] for k in EINSTEIN_KEYS if lead.get(k) is not None), None)
        model_score = 100.0 * probability
        if einstein is None:
            return round(model_score, 2)
        bounded = min(max(float(einstein), 0.0), 100.0)
        return round(EINSTEIN_WEIGHT * bounded + (1 - EINSTEIN_WEIGHT) * model_score, 2)

    def explain_score(self, lead: Record, top: int = 5) -> dict[str, Any]:
        """The score, its parts, the top factors and a reasoning text for ``AI_Reasoning__c``."""
        explanation = self.explain(lead, top)
        return {
            "score": self._blend(lead, explanation.probability),
            "einstein_score": next(
                (lead[k] for k in EINSTEIN_KEYS if lead.get(k) is not None), None
            ),
            "model_probability": explanation.probability,
            "model_name": explanation.model_name,
            "model_version": explanation.model_version,
            "factors": [f.to_dict() for f in explanation.factors],
            "reasoning": explanation.reasoning(),
        }


class UpsellDetector(ModelService):
    """Expansion candidates among accounts (the Keras network)."""

    kind = "upsell"

    def predict(self, account: Record) -> float:
        """Probability that the account expands (0-1)."""
        return self.score(account).probability

    def is_candidate(self, account: Record, threshold: float = 0.5) -> bool:
        """Whether to flag the account as an expansion candidate."""
        return self.predict(account) >= threshold


class WinProbability(ModelService):
    """Win probability of an open opportunity and the factors that hold it back."""

    kind = "win"

    def predict(self, opportunity: Record) -> float:
        """Win probability (0-1)."""
        return self.score(opportunity).probability

    def get_risk_factors(self, opportunity: Record, top: int = 5) -> list[Factor]:
        """The factors that lower this opportunity's chance, strongest first."""
        return [f for f in self.explain(opportunity, top).factors if f.contribution < 0]
