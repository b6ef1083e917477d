"""Opportunity insights (SPEC.md Flow 2): win probability, risks, next actions, close timing.

An Opportunity that is created, re-read (a snapshot) or moves to another open stage is
scored by the win model; :func:`decide` turns that score into, in order:

1. ``OpportunityInsightsComputed`` (``decisions.opportunities``): the probability, the
   risk factors (the explanation's factors that *lower* it), the recommended actions
   (a fixed table from factor to sales action), the next best action, the optimal
   close date (:func:`optimal_close_date`) and the local competitor intelligence;
2. ``PredictionMade`` (``predictions``) for ``ml_predictions`` and model monitoring;
3. one ``SalesforceWriteRequested`` UPDATE of the Opportunity's AI fields;
4. when the probability is below ``at_risk_below`` (30 %): an e-mail to the owner with
   the suggested discount (:func:`suggested_discount`), a high-priority Task with
   talking points, and the start of the ``retention`` workflow;
5. ``WorkflowAdvanced``: this insights run, completed.

Everything here is pure: the model's answer arrives as a :class:`~agents.scoring.Score`
and "today" is the cause's commit date, so deciding twice yields the same events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Any

from agents.base import COMPLETED, STARTED, Decision, Derivation, Emission, run_id
from agents.scoring import Score
from agents.snapshots import Snapshot, evolve, value
from ml.features.signals import parse_day
from schema_registry.events import (
    ChangeType,
    FieldValue,
    NotificationChannel,
    OpportunityInsightsComputed,
    RecordChanged,
)

AGENT = "agents.opportunity_insights"
WORKFLOW = "opportunity_insights"
#: The workflow an at-risk deal starts (its own run, owned by whoever runs retention plays).
RETENTION_WORKFLOW = "retention"
DECISIONS = "decisions.opportunities"
ENTITY = "Opportunity"

CLOSED_STAGES = frozenset({"Closed Won", "Closed Lost"})
#: Recipient of the at-risk alert when the opportunity's ``OwnerId`` is unknown.
UNKNOWN_OWNER = "opportunity-owner"
#: Field lengths (simulator/schema.py): string fields, Opportunity text areas, Task.Description.
STRING_LENGTH = 255
LONG_TEXT = 32_768
TASK_DESCRIPTION_LENGTH = 32_000
TASK_SUBJECT = "At-risk deal: talking points"
#: Key of the stage history (``[{"StageName", "CreatedDate"}]``, oldest first) in a snapshot.
STAGE_HISTORY = "Stage_History"

_DELETES = frozenset({ChangeType.DELETE, ChangeType.GAP_DELETE})

# Actions of the rule table (factor of the WIN feature set -> sales actions).
MULTI_THREAD = "Multi-thread the deal: engage more stakeholders, including the economic buyer"
RE_ENGAGE = "Re-engage the buyer: book a meeting this week and agree on dated next steps"
MUTUAL_PLAN = "Unblock the stage: confirm its exit criteria in a mutual action plan"
VALIDATE_CLOSE = "Validate the close date with the economic buyer and map the signing process"
COMPETITIVE_PLAY = "Run the competitive play: differentiators, battle card and customer references"
PRICING_REVIEW = "Review pricing with the deal desk: anchor on value before any further discount"
REQUALIFY = "Requalify the deal: confirm need, budget, authority and timeline again"
TIMING = "Reconfirm timing: align the close plan with the buyer's budget cycle"
DECISION_DEADLINE = "Set a decision deadline with the buyer, or requalify the aged deal"
RIGHT_SIZE = "Right-size the proposal: offer a phased start or a smaller first order"
CASE_STUDIES = "Share case studies and references from the buyer's industry"
EXPANSION_SPONSOR = "Involve the account's customer success manager as an internal sponsor"
CHANNEL_SPONSOR = "Ask the lead source (partner or referrer) to sponsor the deal"

#: Actions per factor of the WIN feature set, applied to factors that lower the probability.
FACTOR_ACTIONS: dict[str, tuple[str, ...]] = {
    "stakeholders_engaged": (MULTI_THREAD,),
    "activities_30d": (RE_ENGAGE,),
    "days_in_stage": (MUTUAL_PLAN,),
    "close_date_pushes": (VALIDATE_CLOSE,),
    "competitor_count": (COMPETITIVE_PLAY,),
    "discount_pct": (PRICING_REVIEW,),
    "stage_regressions": (REQUALIFY,),
    "days_to_close": (TIMING,),
    "age_days": (DECISION_DEADLINE,),
    "amount": (RIGHT_SIZE,),
    "industry": (CASE_STUDIES,),
    "opportunity_type": (EXPANSION_SPONSOR,),
    "lead_source": (CHANNEL_SPONSOR,),
}

#: The next best action of a stage when no factor lowers the probability.
STAGE_ACTIONS: dict[str, str] = {
    "Prospecting": "Qualify the opportunity: confirm need, budget, authority and timeline",
    "Qualification": "Hold a discovery call with the key stakeholders",
    "Needs Analysis": "Document the requirements and map each to the solution",
    "Value Proposition": "Present the value proposition and ROI to the decision makers",
    "Id. Decision Makers": "Meet the economic buyer and confirm the decision makers",
    "Perception Analysis": "Address the buyer's open concerns and confirm solution fit",
    "Proposal/Price Quote": "Send the proposal and book a review of it with the buyer",
    "Negotiation/Review": "Agree the final terms and set a signature date",
}
DEFAULT_ACTION = "Confirm the next step and its date with the buyer"


@dataclass(frozen=True)
class OpportunityConfig:
    """Thresholds and rules of the opportunity insights workflow."""

    #: A deal is at risk when its win probability (0-1) is below this.
    at_risk_below: float = 0.30
    #: The suggested discount never exceeds this (percent).
    discount_max_percent: float = 15.0
    #: Discount suggested to a deal just below the threshold (percent).
    discount_base_percent: float = 5.0
    #: Added discount per percentage point of win probability below the threshold.
    discount_step_percent: float = 0.5
    #: The talking-points Task is due this many days after the cause's date.
    task_due_days: int = 2
    #: At most this many risk factors are recorded and written.
    max_risk_factors: int = 5
    #: At most this many recommended actions are recorded and written.
    max_actions: int = 5
    #: From this win probability (0-1) on, the close date is kept as planned.
    confident_above: float = 0.60
    #: Days the close date slips for a deal between ``at_risk_below`` and ``confident_above``.
    slip_days_uncertain: int = 14
    #: Days the close date slips for an at-risk deal.
    slip_days_at_risk: int = 30
    #: No close date earlier than this many days after the cause's date is achievable.
    min_lead_days: int = 7
    #: A deal in its stage for longer than this is stalled (days).
    stall_after_days: int = 30
    #: Each stalled day moves the close date by a day, up to this many days.
    stall_max_days: int = 30


def skip_reason(change: RecordChanged, snapshot: Snapshot | None = None) -> str | None:
    """Why ``change`` starts no insights run (``None``: it does).

    ``snapshot`` is the record *after* ``change`` (``agents.snapshots.evolve``); the new
    stage is read from the change's own fields first, then from the snapshot. Reasons:
    ``not_opportunity``, ``echo`` (our own write-back), ``deleted``, ``not_stage_change``
    (an UPDATE that leaves ``StageName`` alone, or a gap/overflow/undelete event),
    ``closed`` (Closed Won is onboarding's, Closed Lost needs no insights).
    """
    header = change.header
    if header.entity_name != ENTITY:
        return "not_opportunity"
    if change.is_echo:
        return "echo"
    if header.change_type in _DELETES or (snapshot is not None and snapshot.get("deleted")):
        return "deleted"
    created = header.change_type == ChangeType.CREATE
    moved = header.change_type == ChangeType.UPDATE and "StageName" in header.changed_fields
    if not (change.is_snapshot or created or moved):
        return "not_stage_change"
    stage = change.fields.get("StageName")
    if stage is None:
        stage = value(snapshot, "StageName")
    if stage in CLOSED_STAGES:
        return "closed"
    return None


def triggers(change: RecordChanged, snapshot: Snapshot | None = None) -> bool:
    """Whether ``change`` (with ``snapshot``, the record after it) starts an insights run.

    True for a non-echo, non-delete Opportunity CREATE, snapshot, or UPDATE whose
    ``changedFields`` name ``StageName``, unless the new stage is closed.
    """
    return skip_reason(change, snapshot) is None


def fold(before: Snapshot | None, change: RecordChanged) -> Snapshot:
    """The opportunity after ``change``: fields and stage history; every runtime folds so.

    The fields come from :func:`~agents.snapshots.evolve`, the history from
    :func:`track_stage`.
    """
    return track_stage(before, evolve(before, change), change)


def track_stage(before: Snapshot | None, after: Snapshot, change: RecordChanged) -> Snapshot:
    """``after`` with the stage history carried over from ``before`` and extended by ``change``.

    ``evolve`` keeps fields only, so a runtime that wants ``days_in_stage`` and
    ``stage_regressions`` calls this after it: the history (``Stage_History``, entries
    ``{"StageName", "CreatedDate"}`` oldest first, as :mod:`ml.features.signals` reads
    it) gains an entry dated the cause's commit day when a CREATE or a stage-changing
    UPDATE (or a snapshot showing a stage other than the last recorded one) brings a
    new stage. Re-applying the same change adds nothing.
    """
    if STAGE_HISTORY in after:
        return after
    history: list[dict[str, str]] = [
        dict(entry) for entry in ((before or {}).get(STAGE_HISTORY) or [])
    ]
    stage = value(after, "StageName")
    header = change.header
    entered = (
        header.change_type == ChangeType.CREATE
        or (header.change_type == ChangeType.UPDATE and "StageName" in header.changed_fields)
        or (change.is_snapshot and bool(history))
    )
    if isinstance(stage, str) and entered and (not history or history[-1]["StageName"] != stage):
        day = header.commit_timestamp.astimezone(UTC).date()
        history.append({"StageName": stage, "CreatedDate": day.isoformat()})
    if not history:
        return after
    return {**after, STAGE_HISTORY: history}


def scoring_record(snapshot: Snapshot) -> dict[str, Any]:
    """The record the win model scores: the snapshot's fields, plus its stage history if any.

    The WIN feature set reads Salesforce field names (``Amount``, ``CloseDate``,
    ``Competitor_Count__c`` ...) and derives ``days_in_stage``/``stage_regressions``
    from ``Stage_History``; a snapshot without one leaves those features missing.
    """
    record: dict[str, Any] = dict(snapshot.get("fields") or {})
    history = snapshot.get(STAGE_HISTORY)
    if isinstance(history, Sequence) and not isinstance(history, str) and history:
        record[STAGE_HISTORY] = [dict(entry) for entry in history]
    return record


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def risk_factors(score: Score, limit: int = 5) -> tuple[str, ...]:
    """The descriptions of the factors that lower the win probability, strongest first."""
    negatives = sorted(
        (
            (factor.contribution, index, factor.name)
            for index, factor in enumerate(score.factors)
            if factor.contribution < 0
        ),
    )
    texts = []
    for contribution, index, name in negatives[:limit]:
        if index < len(score.descriptions):
            texts.append(score.descriptions[index])
        else:
            texts.append(f"{name} decreases it by {abs(contribution):.3f}")
    return tuple(texts)


def recommended_actions(score: Score, stage: str | None, limit: int = 5) -> tuple[str, ...]:
    """Sales actions for the factors that lower the probability (strongest first, no repeats).

    Factors are looked up in :data:`FACTOR_ACTIONS`; when none applies, the stage's
    default action (:data:`STAGE_ACTIONS`) is the only one.
    """
    actions: list[str] = []
    for factor in sorted(
        (f for f in score.factors if f.contribution < 0), key=lambda f: f.contribution
    ):
        for action in FACTOR_ACTIONS.get(factor.name, ()):
            if action not in actions:
                actions.append(action)
    if not actions:
        actions.append(STAGE_ACTIONS.get(stage or "", DEFAULT_ACTION))
    return tuple(actions[:limit])


def optimal_close_date(
    close_date: date | None,
    probability: float,
    days_in_stage: float | None,
    today: date,
    config: OpportunityConfig,
) -> date | None:
    """The close date the deal can realistically make (``None`` when ``CloseDate`` is unknown).

    ``base = max(CloseDate, today + min_lead_days)`` (a date in the past or within a
    week is not achievable), then a slip for uncertainty: none from
    ``confident_above`` (60 %) on, ``slip_days_uncertain`` (14) from ``at_risk_below``
    (30 %) on, ``slip_days_at_risk`` (30) below it; then one day per day in the
    current stage beyond ``stall_after_days`` (30), at most ``stall_max_days`` (30).
    """
    if close_date is None:
        return None
    base = max(close_date, today + timedelta(days=config.min_lead_days))
    if probability >= config.confident_above:
        slip = 0
    elif probability >= config.at_risk_below:
        slip = config.slip_days_uncertain
    else:
        slip = config.slip_days_at_risk
    stalled = max(0, int(days_in_stage or 0) - config.stall_after_days)
    return base + timedelta(days=slip + min(stalled, config.stall_max_days))


def suggested_discount(probability: float, config: OpportunityConfig) -> float:
    """The incentive for an at-risk deal, in percent (0 when it is not at risk).

    ``discount_base_percent`` (5) plus ``discount_step_percent`` (0.5) per percentage
    point the probability falls below ``at_risk_below``, rounded to half a percent and
    capped at ``discount_max_percent`` (15): 29 % -> 5.5, 20 % -> 10, 10 % or less -> 15.
    """
    if probability >= config.at_risk_below:
        return 0.0
    gap_points = (config.at_risk_below - probability) * 100.0
    raw = config.discount_base_percent + config.discount_step_percent * gap_points
    return min(config.discount_max_percent, round(raw * 2.0) / 2.0)


def _competitors(fields: Mapping[str, FieldValue]) -> list[str]:
    names: list[str] = []
    for name in sorted(fields):
        lowered = name.lower()
        if "competitor" not in lowered or name in (
            "Competitor_Count__c",
            "Competitor_Intelligence__c",
        ):
            continue
        raw = fields[name]
        if not isinstance(raw, str):
            continue
        for part in re.split(r"[;,\n]", raw):
            part = part.strip()
            if part and part not in names:
                names.append(part)
    return names


def competitor_intelligence(snapshot: Snapshot) -> str:
    """The local provider's competitor intelligence, built from the record alone.

    No outside service is asked: the text summarises ``Competitor_Count__c`` and any
    other field naming competitors (``Competitor__c``, ``Competitors__c``; values split
    on ``;``, ``,`` and new lines), and grades the pressure (0 none, 1 low, 2 moderate,
    3+ high). It is recorded in the decision's ``enrichment`` like any provider's answer.
    """
    fields: Mapping[str, FieldValue] = snapshot.get("fields") or {}
    names = _competitors(fields)
    raw_count = fields.get("Competitor_Count__c")
    count: int | None = None
    if isinstance(raw_count, int | float) and not isinstance(raw_count, bool):
        count = int(raw_count)
    if names:
        count = max(count or 0, len(names))
    if count is None:
        return "Local competitor intelligence: the opportunity names no competitors."
    if count == 0:
        return (
            "Local competitor intelligence: no competitors on the opportunity; "
            "pressure none. Protect the single-vendor position."
        )
    pressure = "low" if count == 1 else "moderate" if count == 2 else "high"
    named = f" ({', '.join(names)})" if names else ""
    plural = "competitor" if count == 1 else "competitors"
    advice = (
        "Keep the differentiators in front of the buyer."
        if count == 1
        else "Prepare a battle card and customer references; expect price pressure."
    )
    return (
        f"Local competitor intelligence: {count} {plural}{named} on the opportunity; "
        f"pressure {pressure}. {advice}"
    )


def _bullets(lines: Sequence[str], empty: str) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else empty


def _numbered(lines: Sequence[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))


def talking_points(
    name: str,
    percent: float,
    risks: Sequence[str],
    actions: Sequence[str],
    discount: float,
    close: date | None,
) -> str:
    """The Task's description: what threatens the deal and what to say and do about it."""
    incentive = f"Incentive: offer up to {discount:.1f}% discount"
    incentive += (
        f" for a signature by {close.isoformat()}." if close else " for a prompt signature."
    )
    return "\n".join(
        [
            f"Talking points for {name} (win probability {percent:.2f}%).",
            "",
            "Risks to address:",
            _bullets(risks, "- No single factor stands out; confirm the buyer's priorities."),
            "",
            "Recommended actions:",
            _numbered(actions),
            "",
            incentive,
        ]
    )


def decide(
    change: RecordChanged,
    snapshot: Snapshot,
    score: Score,
    config: OpportunityConfig | None = None,
) -> Decision:
    """The events of one insights run on ``change`` (``snapshot``: the record after it).

    Returns ``Decision(outcome=<skip reason>)`` without events when :func:`skip_reason`
    names one; otherwise the events listed in the module docstring, with outcome
    ``"at_risk"`` or ``"on_track"``. ``score`` is the win model's score of
    :func:`scoring_record` ``(snapshot)``.
    """
    config = config or OpportunityConfig()
    reason = skip_reason(change, snapshot)
    if reason is not None:
        return Decision(outcome=reason)
    derive = Derivation(AGENT, change)
    opportunity = change.subject or str(value(snapshot, "Id") or "")
    today = change.time.astimezone(UTC).date()
    fields: Mapping[str, FieldValue] = snapshot.get("fields") or {}
    stage = value(snapshot, "StageName")
    name = str(value(snapshot, "Name") or opportunity)
    owner = value(snapshot, "OwnerId")

    probability = score.probability
    at_risk = probability < config.at_risk_below
    risks = risk_factors(score, config.max_risk_factors)
    actions = recommended_actions(
        score, stage if isinstance(stage, str) else None, config.max_actions
    )
    next_action = truncate(actions[0], STRING_LENGTH)
    days_in_stage = score.features.get("days_in_stage")
    close = optimal_close_date(
        parse_day(fields.get("CloseDate")),
        probability,
        float(days_in_stage) if isinstance(days_in_stage, int | float) else None,
        today,
        config,
    )
    intelligence = competitor_intelligence(snapshot)

    emissions: list[Emission] = [
        Emission(
            DECISIONS,
            opportunity,
            OpportunityInsightsComputed(
                **derive.envelope("insights", opportunity),
                model=score.model,
                features=dict(score.features),
                factors=score.factors,
                enrichment={"provider": "local", "competitor_intelligence": intelligence},
                win_probability=probability,
                risk_factors=risks,
                recommended_actions=actions,
                next_best_action=next_action,
                optimal_close_date=close,
                at_risk=at_risk,
            ),
        ),
        derive.prediction(
            purpose="win_probability",
            entity=ENTITY,
            subject=opportunity,
            model=score.model,
            score=probability,
            features=score.features,
            factors=score.factors,
        ),
    ]
    update: dict[str, FieldValue] = {
        "AI_Win_Probability__c": score.percent,
        "Risk_Factors__c": truncate(
            _bullets(risks, "No factor lowers the win probability."), LONG_TEXT
        ),
        "Recommended_Actions__c": truncate(_numbered(actions), LONG_TEXT),
        "Next_Best_Action__c": next_action,
        "Competitor_Intelligence__c": truncate(intelligence, LONG_TEXT),
    }
    if close is not None:
        update["Optimal_Close_Date__c"] = close.isoformat()
    emissions.append(derive.update("command:Opportunity", ENTITY, opportunity, update))
    steps = 2  # scored, written back

    if at_risk:
        discount = suggested_discount(probability, config)
        due = today + timedelta(days=config.task_due_days)
        retention_run = run_id(AGENT + ".retention", change.id)
        threshold = f"{100.0 * config.at_risk_below:.0f}%"
        body = "\n".join(
            [
                f"{name} ({opportunity}) has a {score.percent:.2f}% win probability, "
                f"below the {threshold} at-risk threshold.",
                "",
                "Risk factors:",
                _bullets(risks, "- none identified"),
                "",
                "Recommended actions:",
                _numbered(actions),
                "",
                f"Suggested incentive: up to {discount:.1f}% discount.",
                f"Optimal close date: {close.isoformat() if close else 'unknown'}.",
                f"A task with talking points is due on {due.isoformat()}.",
            ]
        )
        data = {
            "opportunity_id": opportunity,
            "win_probability": f"{score.percent:.2f}",
            "suggested_discount_percent": f"{discount:.1f}",
            "next_best_action": next_action,
            "task_due": due.isoformat(),
            "retention_run_id": retention_run,
        }
        account = value(snapshot, "AccountId")
        if account:
            data["account_id"] = str(account)
        emissions.append(
            derive.notify(
                "notify:owner",
                opportunity,
                NotificationChannel.EMAIL,
                str(owner) if owner else UNKNOWN_OWNER,
                "opportunity_at_risk",
                truncate(
                    f"At-risk deal: {name} ({score.percent:.2f}% win probability)", STRING_LENGTH
                ),
                body,
                data,
            )
        )
        task: dict[str, FieldValue] = {
            "Subject": TASK_SUBJECT,
            "Description": truncate(
                talking_points(name, score.percent, risks, actions, discount, close),
                TASK_DESCRIPTION_LENGTH,
            ),
            "Priority": "High",
            "Status": "Not Started",
            "ActivityDate": due.isoformat(),
            "WhatId": opportunity,
        }
        if owner:
            task["OwnerId"] = str(owner)
        emissions.append(derive.create("task:talking_points", "Task", opportunity, task))
        emissions.append(
            derive.workflow(
                "retention:start",
                RETENTION_WORKFLOW,
                retention_run,
                None,
                STARTED,
                f"win probability {score.percent:.2f}% below {threshold}",
                opportunity,
                steps_completed=0,
                total_steps=0,
                opportunity_id=opportunity,
                suggested_discount_percent=f"{discount:.1f}",
                insights_run_id=run_id(AGENT, change.id),
            )
        )
        steps += 3  # alerted, task created, retention started

    outcome = "at_risk" if at_risk else "on_track"
    emissions.append(
        derive.workflow(
            "run:completed",
            WORKFLOW,
            run_id(AGENT, change.id),
            None,
            COMPLETED,
            f"win probability {score.percent:.2f}%: {outcome.replace('_', ' ')}",
            opportunity,
            steps_completed=steps,
            total_steps=steps,
            outcome=outcome,
        )
    )
    return Decision(tuple(emissions), outcome)
