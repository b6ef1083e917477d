"""Churn prevention (SPEC.md Flow 4): the daily batch's decision for each account.

**The batch.** A scheduler starts one run per day (02:00 by default) for an as-of date:
:func:`batch_cause` is the :class:`WorkflowAdvanced` that starts it (workflow
``churn_prevention_batch``), with an id, run id and time that depend on the date only,
so running the batch twice on the same day yields the same events everywhere and the
sinks do nothing twice. The runtime appends it (:func:`batch_started`), scores every
account's record (:func:`agents.usage.features`) in one batched call, calls
:func:`decide` per account and appends :func:`batch_finished` at the end.

**Per account**, :func:`decide` derives the :class:`ChurnRiskAssessed` decision from the
batch event (purpose ``assess:<account id>``, so ids differ across accounts) and every
other event from that decision (its ``causation_id``), with the batch event as the
flow's ``correlation_id``:

1. ``ChurnRiskAssessed`` on ``decisions.churn``: probability, the descriptions of the
   factors that raise it, the actions of the intervention plan, ``high_risk``
   (probability > ``high_risk_above``, 70 % by default);
2. ``PredictionMade`` (purpose ``churn``, entity ``Account``) for ``ml_predictions``;
3. an Account update of ``Churn_Risk__c`` (percent), ``Risk_Factors__c`` (one factor a
   line) and ``Intervention_Plan__c`` (one action a line: timing, action, reason).

A high-risk account also gets SPEC's immediate actions: a high-priority Case, a Slack
alert to the customer success channel, an executive outreach e-mail to the account
owner carrying the retention offer (:func:`retention_discount`), an emergency QBR Task,
and a ``churn_prevention`` retention run (``STARTED``; ``total_steps`` = actions in
the plan, ``steps_completed`` = immediate actions issued here). The dedicated success
manager and the medium-term actions are in the plan, for people to carry out.

**The plan** comes from :func:`ml.interventions.suggest`, which takes
:class:`ml.explain.Factor` objects; a :class:`~agents.scoring.Score` records the factors
as schema ``Factor`` (name, contribution) plus one description per factor, so each is
rebuilt as an explain ``Factor`` whose value is the recorded feature value and whose
``describe()`` returns the recorded description (the reason shown in the plan). For a
high-risk account the plan always holds every immediate action of SPEC Flow 4.

**Intervention outcomes** close the loop (SPEC steps 6-7): when it is known whether an
assessed account churned, :func:`outcome_record` gives the training row of that
assessment (its recorded features, the ``Churned`` label and provenance), which the
monthly retraining reads like the synthetic histories.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from agents.base import (
    COMPLETED,
    STARTED,
    WORKFLOW_EVENTS,
    Decision,
    Derivation,
    Emission,
    run_id,
)
from agents.scoring import Score
from ml import interventions
from ml.explain import Factor as ExplainFactor
from schema_registry.events import (
    ChurnRiskAssessed,
    FieldValue,
    NotificationChannel,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id

AGENT = "agents.churn"
WORKFLOW = "churn_prevention"
BATCH_WORKFLOW = f"{WORKFLOW}_batch"
#: Topic of the churn decisions (unprefixed), keyed by account id.
DECISIONS = "decisions.churn"

#: Salesforce text limits: long text areas, Case/Task ``Description``, string fields.
LONG_TEXT = 32768
DESCRIPTION_TEXT = 32000
STRING_TEXT = 255

#: The immediate actions this decision issues as commands (the rest are for people).
ISSUED = (
    interventions.HIGH_PRIORITY_CASE,
    interventions.ALERT_CSM,
    interventions.EXECUTIVE_OUTREACH,
    interventions.RETENTION_OFFER,
    interventions.EMERGENCY_QBR,
)
#: SPEC Flow 4's immediate actions, in its order: all are in a high-risk account's plan.
SPEC_IMMEDIATE = (
    interventions.ALERT_CSM,
    interventions.HIGH_PRIORITY_CASE,
    interventions.EXECUTIVE_OUTREACH,
    interventions.RETENTION_OFFER,
    interventions.EMERGENCY_QBR,
    interventions.DEDICATED_CSM,
)


@dataclass(frozen=True)
class ChurnConfig:
    """Thresholds and targets of the churn workflow."""

    #: Probability above which an account is high risk (SPEC: 70 %).
    high_risk_above: float = 0.70
    #: The largest retention discount offered, in percent of the annual contract value.
    retention_discount_max_percent: float = 20.0
    #: Slack channel of the customer success managers.
    csm_channel: str = "#customer-success"
    #: Days from the as-of date to the emergency QBR.
    qbr_within_days: int = 7


def batch_run_id(as_of: date) -> str:
    """The run id of the daily batch for ``as_of`` (the same on every run that day)."""
    return run_id(AGENT, f"churn-batch:{as_of.isoformat()}")


def batch_cause(as_of: date) -> WorkflowAdvanced:
    """The event that starts the daily batch for ``as_of``: every account's decision's cause.

    Its id, subject (the batch run id) and time (midnight UTC of ``as_of``) depend on the
    date only, so a second run of the same day derives identical events.
    """
    return WorkflowAdvanced(
        id=derived_event_id(f"churn-batch:{as_of.isoformat()}", AGENT, "batch"),
        source=AGENT,
        subject=batch_run_id(as_of),
        time=datetime.combine(as_of, time(0), tzinfo=UTC),
        workflow=BATCH_WORKFLOW,
        from_state=None,
        to_state=STARTED,
        detail=f"daily churn assessment as of {as_of.isoformat()}",
        attributes={"as_of": as_of.isoformat(), "steps_completed": "0"},
    )


def batch_started(as_of: date) -> Emission:
    """:func:`batch_cause` as an emission on ``workflow.events``, keyed by the run id."""
    cause = batch_cause(as_of)
    return Emission(WORKFLOW_EVENTS, cause.subject, cause)


def batch_finished(cause: WorkflowAdvanced, assessed: int, high_risk: int) -> Emission:
    """The batch run's ``COMPLETED`` transition: accounts assessed and found high risk."""
    derivation = Derivation(AGENT, cause)
    event = WorkflowAdvanced(
        **derivation.envelope("batch-finished", cause.subject),
        workflow=cause.workflow,
        from_state=cause.to_state,
        to_state=COMPLETED,
        detail=f"{assessed} accounts assessed, {high_risk} at high risk",
        attributes={
            "as_of": cause.attributes.get("as_of", cause.time.date().isoformat()),
            "steps_completed": str(assessed),
            "total_steps": str(assessed),
            "high_risk": str(high_risk),
        },
    )
    return Emission(WORKFLOW_EVENTS, cause.subject, event)


def retention_run_id(account_id: str, as_of: date) -> str:
    """The id of the retention run of ``account_id`` started by the batch of ``as_of``."""
    return run_id(AGENT, f"churn-retention:{account_id}:{as_of.isoformat()}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _value_weight(annual_contract_value: float | None) -> float:
    """Share of the largest discount an account's value justifies (unknown: the least)."""
    if annual_contract_value is None or annual_contract_value < 10_000:
        return 0.5
    if annual_contract_value < 100_000:
        return 0.75
    return 1.0


def retention_discount(
    probability: float, annual_contract_value: float | None, config: ChurnConfig
) -> float:
    """The AI-calculated retention discount, in percent (0 when not high risk).

    ``max x (0.5 + 0.5 x severity) x weight``, rounded to half a percent, where
    ``severity = (p - threshold) / (1 - threshold)`` (0 at the threshold, 1 at certain
    churn) and ``weight`` is 0.5 below 10,000 of annual contract value (or unknown),
    0.75 below 100,000 and 1 from there: riskier and more valuable accounts get more,
    never more than ``retention_discount_max_percent``.
    """
    threshold = config.high_risk_above
    if probability <= threshold:
        return 0.0
    severity = min(1.0, (probability - threshold) / max(1e-9, 1.0 - threshold))
    raw = config.retention_discount_max_percent * (0.5 + 0.5 * severity)
    raw *= _value_weight(annual_contract_value)
    return min(config.retention_discount_max_percent, round(raw * 2) / 2)


@dataclass(frozen=True)
class _RecordedFactor(ExplainFactor):
    """An explanation factor rebuilt from a :class:`Score`, describing itself as recorded."""

    text: str = ""

    def describe(self) -> str:
        """The description recorded with the score (the reason shown in the plan)."""
        return self.text or super().describe()


def explain_factors(score: Score) -> list[ExplainFactor]:
    """The score's factors as :mod:`ml.explain` factors, for :func:`ml.interventions.suggest`."""
    factors: list[ExplainFactor] = []
    for index, factor in enumerate(score.factors):
        value = score.features.get(factor.name)
        text = score.descriptions[index] if index < len(score.descriptions) else ""
        factors.append(
            _RecordedFactor(
                feature=factor.name,
                value=value if isinstance(value, str) else _number(value),
                baseline=None,
                contribution=factor.contribution,
                text=text,
            )
        )
    return factors


def risk_factors(score: Score) -> tuple[str, ...]:
    """Descriptions of the factors that raise the churn probability, strongest first."""
    described = [
        (factor.contribution, factor.describe())
        for factor in explain_factors(score)
        if factor.contribution > 0
    ]
    return tuple(text for _, text in sorted(described, key=lambda item: -item[0]))


def intervention_plan(
    probability: float, factors: Iterable[ExplainFactor], config: ChurnConfig
) -> list[interventions.Intervention]:
    """The plan of :func:`ml.interventions.suggest`, completed with SPEC's immediate actions.

    For a high-risk account, immediate actions the factors did not select are added
    (reason: the probability), after those already there; immediate actions come first.
    """
    plan = interventions.suggest(probability, factors, config.high_risk_above)
    if probability > config.high_risk_above:
        present = {item.action for item in plan}
        reason = f"churn probability {probability:.0%} exceeds {config.high_risk_above:.0%}"
        missing = [
            interventions.Intervention(action, "immediate", reason)
            for action in SPEC_IMMEDIATE
            if action not in present
        ]
        immediate = [item for item in plan if item.timing == "immediate"]
        later = [item for item in plan if item.timing != "immediate"]
        plan = [*immediate, *missing, *later]
    return plan


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _percent_text(percent: float) -> str:
    return f"{round(percent, 2):g}"


def _plan_line(item: interventions.Intervention, discount: float) -> str:
    action = item.action
    if action == interventions.RETENTION_OFFER and discount > 0:
        action = f"{action}: {discount:g}% off the annual contract"
    return f"[{item.timing}] {action} - {item.reason}"


@dataclass(frozen=True)
class _Account:
    """What the decision needs to know about the account besides its score."""

    id: str
    name: str
    owner_id: str | None
    annual_contract_value: float | None


def _account(account_id: str, fields: Mapping[str, Any], score: Score) -> _Account:
    owner = fields.get("OwnerId")
    acv = _number(score.features.get("annual_contract_value"))
    if acv is None:
        acv = _number(fields.get("Annual_Contract_Value__c"))
    return _Account(
        id=account_id,
        name=str(fields.get("Name") or account_id),
        owner_id=str(owner) if owner else None,
        annual_contract_value=acv,
    )


def decide(
    cause: WorkflowAdvanced,
    account_id: str,
    account_fields: Mapping[str, Any],
    score: Score,
    as_of: date,
    config: ChurnConfig | None = None,
) -> Decision:
    """The churn decision of one account of the batch ``cause`` (outcome ``high_risk``/``low_risk``)."""
    config = config or ChurnConfig()
    account = _account(account_id, account_fields, score)
    factors = explain_factors(score)
    high_risk = score.probability > config.high_risk_above
    plan = intervention_plan(score.probability, factors, config)
    reasons = risk_factors(score)
    discount = (
        retention_discount(score.probability, account.annual_contract_value, config)
        if high_risk
        else 0.0
    )
    assessed = ChurnRiskAssessed(
        **Derivation(AGENT, cause).envelope(f"assess:{account_id}", account_id),
        model=score.model,
        features=dict(score.features),
        factors=score.factors,
        as_of=as_of,
        churn_probability=score.probability,
        risk_factors=reasons,
        intervention_plan=tuple(item.action for item in plan),
        high_risk=high_risk,
    )
    derive = Derivation(AGENT, assessed)
    plan_text = "\n".join(_plan_line(item, discount) for item in plan)
    reasons_text = "\n".join(reasons)
    fields: dict[str, FieldValue] = {
        "Churn_Risk__c": score.percent,
        "Risk_Factors__c": _fit(reasons_text, LONG_TEXT) if reasons_text else None,
        "Intervention_Plan__c": _fit(plan_text, LONG_TEXT) if plan_text else None,
    }
    emissions = [
        Emission(DECISIONS, account_id, assessed),
        derive.prediction(
            "churn",
            "Account",
            account_id,
            score.model,
            score.probability,
            score.features,
            score.factors,
        ),
        derive.update("account", "Account", account_id, fields),
    ]
    if not high_risk:
        return Decision(tuple(emissions), "low_risk")
    emissions.extend(
        _interventions(derive, account, score, as_of, config, plan, discount, reasons_text)
    )
    issued = sum(1 for item in plan if item.action in ISSUED)
    emissions.append(
        derive.workflow(
            "retention-run",
            WORKFLOW,
            retention_run_id(account_id, as_of),
            None,
            STARTED,
            f"churn risk {_percent_text(score.percent)}%: {issued} immediate actions issued, "
            f"{len(plan) - issued} to carry out",
            account_id,
            issued,
            len(plan),
            as_of=as_of.isoformat(),
            retention_discount_percent=f"{discount:g}",
        )
    )
    return Decision(tuple(emissions), "high_risk")


def _interventions(
    derive: Derivation,
    account: _Account,
    score: Score,
    as_of: date,
    config: ChurnConfig,
    plan: list[interventions.Intervention],
    discount: float,
    reasons_text: str,
) -> list[Emission]:
    """The immediate actions issued for a high-risk account: case, alert, e-mail, QBR."""
    pct = _percent_text(score.percent)
    plan_text = "\n".join(_plan_line(item, discount) for item in plan)
    summary = (
        f"Churn probability {pct}% as of {as_of.isoformat()} ({score.model.name} "
        f"v{score.model.version}).\n\nRisk factors:\n{reasons_text or '(none above baseline)'}"
        f"\n\nIntervention plan:\n{plan_text}"
    )
    offer_value = (
        round(account.annual_contract_value * discount / 100, 2)
        if account.annual_contract_value is not None
        else None
    )
    qbr_day = as_of + timedelta(days=config.qbr_within_days)
    data = {
        "account_id": account.id,
        "account_name": account.name,
        "churn_risk_percent": pct,
        "as_of": as_of.isoformat(),
    }
    case_fields: dict[str, FieldValue] = {
        "Subject": _fit(f"Churn risk {pct}%: retention", STRING_TEXT),
        "Priority": "High",
        "Origin": "Web",
        "Type": "Problem",
        "Reason": "Other",
        "Status": "New",
        "Description": _fit(summary, DESCRIPTION_TEXT),
        "AccountId": account.id,
    }
    task_fields: dict[str, FieldValue] = {
        "Subject": _fit(f"Emergency QBR: {account.name} (churn risk {pct}%)", STRING_TEXT),
        "Description": _fit(summary, DESCRIPTION_TEXT),
        "Status": "Not Started",
        "Priority": "High",
        "ActivityDate": qbr_day.isoformat(),
        "WhatId": account.id,
    }
    if account.owner_id:
        task_fields["OwnerId"] = account.owner_id
    offer = {
        **data,
        "retention_discount_percent": f"{discount:g}",
        "annual_contract_value": (
            "" if account.annual_contract_value is None else f"{account.annual_contract_value:g}"
        ),
        "retention_discount_value": "" if offer_value is None else f"{offer_value:g}",
        "qbr_date": qbr_day.isoformat(),
    }
    return [
        derive.create("case", "Case", account.id, case_fields),
        derive.notify(
            "csm-alert",
            account.id,
            NotificationChannel.SLACK,
            config.csm_channel,
            "churn_risk_alert",
            f"Churn risk {pct}%: {account.name}",
            _fit(
                f"{account.name} is at {pct}% churn risk. Deploy a dedicated success manager."
                f"\n{reasons_text}",
                DESCRIPTION_TEXT,
            ),
            data,
        ),
        derive.notify(
            "executive-outreach",
            account.id,
            NotificationChannel.EMAIL,
            account.owner_id or "account-owner",
            "churn_executive_outreach",
            f"Executive outreach: {account.name}",
            _fit(
                f"{account.name} is at {pct}% churn risk. Reach out at executive level with a "
                f"retention offer of {discount:g}% off the annual contract; an emergency QBR "
                f"is due by {qbr_day.isoformat()}.\n\n{summary}",
                DESCRIPTION_TEXT,
            ),
            offer,
        ),
        derive.create("qbr-task", "Task", account.id, task_fields),
    ]


@dataclass(frozen=True)
class InterventionOutcome:
    """What became of an assessed account: churned or not, observed on a later date.

    ``row()`` is a training row for the next churn model: the features the assessment
    recorded (under the churn feature names, which :meth:`FeatureSet.frame` reads
    directly), the label ``Churned`` (the synthetic histories' target) and provenance
    columns (capitalised, ignored by the churn feature set; leave them out, or
    ``ignore`` them in a column mapping, when training from a CSV export).
    ``Intervened`` marks accounts that got the retention actions: their label is the
    outcome *with* the interventions, which a trainer may weight, filter, or compare
    with the predicted probability to measure how well interventions work.
    """

    assessed: ChurnRiskAssessed
    churned: bool
    observed_at: date

    def row(self) -> dict[str, FieldValue]:
        """The training row (features, label, provenance)."""
        assessed = self.assessed
        return {
            **dict(assessed.features),
            "Id": assessed.subject,
            "As_Of": assessed.as_of.isoformat(),
            "Observed_At": self.observed_at.isoformat(),
            "Days_Observed": (self.observed_at - assessed.as_of).days,
            "Churn_Probability": assessed.churn_probability,
            "Intervened": assessed.high_risk,
            "Interventions": "\n".join(assessed.intervention_plan),
            "Model": assessed.model.name,
            "Model_Version": assessed.model.version,
            "Assessment_Id": assessed.id,
            "Churned": self.churned,
        }


def outcome_record(
    assessed: ChurnRiskAssessed, churned: bool, observed_at: date
) -> dict[str, FieldValue]:
    """The training row of ``assessed`` once its outcome is known (see :class:`InterventionOutcome`)."""
    if observed_at < assessed.as_of:
        raise ValueError(
            f"outcome observed {observed_at.isoformat()} before the assessment "
            f"of {assessed.as_of.isoformat()}"
        )
    return InterventionOutcome(assessed, churned, observed_at).row()
