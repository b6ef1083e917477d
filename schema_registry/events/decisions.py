"""Decisions the agents take, each recording the inputs that produced it.

A decision carries everything a replay needs to yield the same projections without
calling the outside world again (ARCHITECTURE.md, principle 2): the model and its
version, the features it was given, the probability it returned, the factors that
explain it and the enrichment answers the agent received.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from schema_registry.events.envelope import Event, FieldValue


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """The model that scored a fact: registry name and version."""

    name: str
    version: str


@dataclass(frozen=True, kw_only=True)
class Factor:
    """One explanation of a score: a feature and its signed contribution."""

    name: str
    contribution: float


@dataclass(frozen=True, kw_only=True)
class _Scored(Event):
    """Fields shared by every model-backed decision (not a subject of its own)."""

    model: ModelRef
    features: Mapping[str, FieldValue] = field(default_factory=dict)
    factors: tuple[Factor, ...] = ()
    enrichment: Mapping[str, str] = field(default_factory=dict)


class LeadRoute(StrEnum):
    """Where a scored lead goes: senior AE (> 80), nurture (> 50), or marketing (MQL)."""

    SENIOR_AE = "SENIOR_AE"
    NURTURE = "NURTURE"
    MQL = "MQL"


@dataclass(frozen=True, kw_only=True)
class LeadScored(_Scored):
    """A lead got its enhanced score (0.4 x Einstein + 0.6 x model) and its route."""

    schema_version = 1

    einstein_score: float | None
    model_score: float
    enhanced_score: float
    route: LeadRoute
    reasoning: str


@dataclass(frozen=True, kw_only=True)
class OpportunityInsightsComputed(_Scored):
    """An opportunity got a win probability, risks, a next best action and a close date."""

    schema_version = 1

    win_probability: float
    risk_factors: tuple[str, ...]
    recommended_actions: tuple[str, ...]
    next_best_action: str
    optimal_close_date: date | None
    at_risk: bool


@dataclass(frozen=True, kw_only=True)
class PlannedProvisioning:
    """One provisioning task of an onboarding plan."""

    system: str
    action: str


@dataclass(frozen=True, kw_only=True)
class OnboardingPlanned(Event):
    """A Closed Won opportunity started onboarding: the provisioning tasks to fan out."""

    schema_version = 1

    opportunity_id: str
    account_id: str
    tasks: tuple[PlannedProvisioning, ...]
    deadline_seconds: int


@dataclass(frozen=True, kw_only=True)
class ChurnRiskAssessed(_Scored):
    """An account's churn probability was assessed by the daily batch."""

    schema_version = 1

    as_of: date
    churn_probability: float
    risk_factors: tuple[str, ...]
    intervention_plan: tuple[str, ...]
    high_risk: bool


@dataclass(frozen=True, kw_only=True)
class UpsellCandidateFlagged(_Scored):
    """An account was found to be an expansion candidate."""

    schema_version = 1

    expansion_probability: float
    products: tuple[str, ...]
