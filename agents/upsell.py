"""Upsell detection (ARCHITECTURE.md flow 5): flag expansion candidates and tell their owner.

**Causes.** The upsell model scores an account when the daily churn batch runs (the
cause is :func:`agents.churn.batch_cause`, shared by every account of the batch) or
when an Account changes in Salesforce (the cause is that account's ``RecordChanged``;
our own write-backs, ``is_echo``, are ignored). Every purpose of a derived event names
the account, so a cause shared by many accounts still gives each its own ids, and
deciding twice on the same cause yields the same events. Deciding on every Account
change would flag a candidate again on each change (new ids, a new Task): the runtime
keeps the last flag per account and calls :func:`decide` on a change only when the
account was not a candidate before (see :func:`decide`'s ``outcome``).

**Events.** Always a ``PredictionMade`` (purpose ``upsell``, entity ``Account``). A
candidate (probability >= ``candidate_at_least``) also gets, derived from the flag:

1. ``UpsellCandidateFlagged`` on ``decisions.upsell`` (key: account id) with the
   expansion probability and the suggested products (:func:`suggest_products`);
2. a Task for the account owner: ``Expansion opportunity: <products>``, due
   ``task_due_days`` after the cause's date;
3. a ``WorkflowAdvanced`` of an ``upsell`` run, ``COMPLETED`` at once (2 of 2 steps:
   flagged, task created), so the run shows in ``workflow_executions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from agents.base import COMPLETED, PREDICTIONS, Decision, Derivation, Emission, run_id
from agents.scoring import Score
from schema_registry.events import (
    Event,
    FieldValue,
    PredictionMade,
    RecordChanged,
    UpsellCandidateFlagged,
)

AGENT = "agents.upsell"
WORKFLOW = "upsell"
#: Topic of the upsell decisions (unprefixed), keyed by account id.
DECISIONS = "decisions.upsell"

STRING_TEXT = 255
DESCRIPTION_TEXT = 32000

#: 30-day API requests from which an account is offered the API add-on.
API_CALLS_HIGH = 1_000_000
#: The next plan of each tier that has one.
NEXT_TIER = {"Starter": "Growth plan upgrade", "Growth": "Enterprise plan upgrade"}
#: Suggested when no rule of :data:`PRODUCT_RULES` applies.
DEFAULT_PRODUCT = "Account expansion review"


@dataclass(frozen=True)
class UpsellConfig:
    """Thresholds of the upsell workflow."""

    #: Probability from which an account is an expansion candidate.
    candidate_at_least: float = 0.5
    #: Days from the cause's date to the owner's task due date.
    task_due_days: int = 5


def _number(features: Mapping[str, FieldValue], name: str) -> float | None:
    value = features.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _above(name: str, threshold: float) -> Callable[[Mapping[str, FieldValue]], bool]:
    def rule(features: Mapping[str, FieldValue]) -> bool:
        value = _number(features, name)
        return value is not None and value > threshold

    return rule


def _at_least(name: str, threshold: float) -> Callable[[Mapping[str, FieldValue]], bool]:
    def rule(features: Mapping[str, FieldValue]) -> bool:
        value = _number(features, name)
        return value is not None and value >= threshold

    return rule


def _cross_sell(features: Mapping[str, FieldValue]) -> bool:
    products = _number(features, "products_owned")
    nps = _number(features, "nps_score")
    return products is not None and products <= 2 and nps is not None and nps >= 30


#: The product suggestion table: (product, rule on the upsell features), in order.
#: A product is suggested once even if several rules name it.
PRODUCT_RULES: tuple[tuple[str, Callable[[Mapping[str, FieldValue]], bool]], ...] = (
    # more users active than 90 % of the seats: they will run out
    ("Additional seats", _above("seat_utilization", 0.9)),
    # headcount grew by more than 20 % in a year: more seats will be needed
    ("Additional seats", _above("employee_growth_12m", 0.2)),
    # more than 80 % of the purchased storage in use
    ("Storage expansion", _above("storage_utilization", 0.8)),
    # heavy API use (API_CALLS_HIGH requests in 30 days)
    ("API add-on", _at_least("api_calls_30d", API_CALLS_HIGH)),
    # adopted most licensed features: ready for the premium ones
    ("Premium features", _above("feature_adoption_rate", 80.0)),
    # few products and a promoter: cross-sell
    ("Complementary product", _cross_sell),
)


def suggest_products(features: Mapping[str, FieldValue]) -> tuple[str, ...]:
    """Products to offer an account, from its upsell features (never empty).

    The rules of :data:`PRODUCT_RULES` in order, then the next plan tier of a Starter
    or Growth account (:data:`NEXT_TIER`); :data:`DEFAULT_PRODUCT` when none applies.
    """
    products: list[str] = []
    for product, rule in PRODUCT_RULES:
        if product not in products and rule(features):
            products.append(product)
    tier = features.get("plan_tier")
    if isinstance(tier, str) and tier.strip() in NEXT_TIER:
        products.append(NEXT_TIER[tier.strip()])
    return tuple(products) or (DEFAULT_PRODUCT,)


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def decide(
    cause: Event,
    account_id: str,
    account_fields: Mapping[str, Any],
    score: Score,
    config: UpsellConfig | None = None,
) -> Decision:
    """The upsell decision of one account (outcome ``candidate``, ``not_candidate``, ``echo``)."""
    config = config or UpsellConfig()
    if isinstance(cause, RecordChanged) and cause.is_echo:
        return Decision(outcome="echo")
    derive = Derivation(AGENT, cause)
    prediction = PredictionMade(
        **derive.envelope(f"prediction:upsell:{account_id}", account_id),
        purpose="upsell",
        entity="Account",
        model=score.model,
        score=score.probability,
        features=dict(score.features),
        factors=score.factors,
    )
    emissions = [Emission(PREDICTIONS, account_id, prediction)]
    if score.probability < config.candidate_at_least:
        return Decision(tuple(emissions), "not_candidate")
    products = suggest_products(score.features)
    flagged = UpsellCandidateFlagged(
        **derive.envelope(f"flag:{account_id}", account_id),
        model=score.model,
        features=dict(score.features),
        factors=score.factors,
        expansion_probability=score.probability,
        products=products,
    )
    emissions.append(Emission(DECISIONS, account_id, flagged))
    follow = Derivation(AGENT, flagged)
    name = str(account_fields.get("Name") or account_id)
    owner = account_fields.get("OwnerId")
    due = cause.time.astimezone(UTC).date() + timedelta(days=config.task_due_days)
    description = (
        f"{name}: expansion probability {score.percent:g}% ({score.model.name} "
        f"v{score.model.version}).\n\nSuggested products:\n"
        + "\n".join(f"- {product}" for product in products)
        + (f"\n\n{score.reasoning}" if score.reasoning else "")
    )
    task: dict[str, FieldValue] = {
        "Subject": _fit(f"Expansion opportunity: {', '.join(products)}", STRING_TEXT),
        "Description": _fit(description, DESCRIPTION_TEXT),
        "Status": "Not Started",
        "Priority": "High" if score.probability >= 0.8 else "Normal",
        "ActivityDate": due.isoformat(),
        "WhatId": account_id,
    }
    if owner:
        task["OwnerId"] = str(owner)
    emissions.append(follow.create("owner-task", "Task", account_id, task))
    emissions.append(
        follow.workflow(
            "completed",
            WORKFLOW,
            run_id(AGENT, flagged.id),
            None,
            COMPLETED,
            f"expansion candidate at {score.percent:g}%: {', '.join(products)}",
            account_id,
            2,
            2,
        )
    )
    return Decision(tuple(emissions), "candidate")
