"""Lead qualification (SPEC.md Flow 1): enhanced score, write-back and routing of new leads.

A lead is qualified when its CDC ``CREATE`` arrives (or a snapshot of a lead that was
never scored, after a gap), or, where configured, its ``New_Lead__e`` platform event.
Ids derive from the **lead id**, not from the fact, so a lead is qualified once in
effect whichever of those facts arrives, however often it is redelivered.

The score: ``Enhanced = w x Einstein + (1 - w) x model`` on 0-100 (``w`` = 0.4 by
default), where Einstein is the lead's ``Einstein_Lead_Score__c`` and the model is the
promoted ``lead`` random forest scored on the lead's fields merged with the enrichment
answers. **Fallback**: a lead without an Einstein score gets the model's score alone
(the weight is not re-spread, so the scale stays 0-100 and comparable).

Routing (thresholds configurable): above 80 a senior AE (a stable, balanced pick from
the configured queue: the same lead always goes to the same AE, so a redelivery cannot
reassign it), a personalised e-mail, a follow-up task due in 24 h and a Slack message
to ``#high-value-leads``; above 50 the nurture campaign and its content series; else
Marketing Qualified and a hand-off to marketing automation.

Every qualification emits, in order: the ``LeadScored`` decision (with model, features,
factors and enrichment answers), the ``PredictionMade``, one Lead update carrying the
AI fields and the route's fields (one write per lead, the frugal choice), the route's
commands, and one ``WorkflowAdvanced`` that records the completed run.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from agents.base import COMPLETED, Decision, Derivation, Emission, run_id
from agents.scoring import Score
from schema_registry.events import (
    ChangeType,
    Event,
    FieldValue,
    LeadRoute,
    LeadScored,
    NotificationChannel,
    PlatformEventPublished,
    RecordChanged,
)

AGENT = "agents.lead_qualification"
WORKFLOW = "lead_qualification"
DECISIONS = "decisions.leads"

#: ``New_Lead__e`` fields and the Lead fields they carry.
PLATFORM_EVENT_FIELDS = {
    "Lead_Id__c": "Id",
    "Email__c": "Email",
    "Company__c": "Company",
    "Source__c": "LeadSource",
}
#: The personal fields the flow reads (its features, greetings, decision makers and the
#: address it writes to): the only ones the worker opens (sfe.privacy).
PERSONAL_INPUTS = frozenset(
    {
        "FirstName", "LastName", "Name.FirstName", "Name.LastName", "Email", "Email__c",
        "Title", "Country", "Decision_Makers__c",
    }
)  # fmt: skip
EINSTEIN_FIELD = "Einstein_Lead_Score__c"
SCORE_FIELD = "AI_Enhanced_Score__c"
_LONG_TEXT = 32_768
_TEXT = 255
#: ``AI_Lead_Route__c`` values of the three routes. The route is an AI field of ours: the
#: Lead's ``Status`` is Salesforce's (conflict rules), so the sink would refuse it.
ROUTE_FIELD = "AI_Lead_Route__c"
ROUTE_LABEL = {
    LeadRoute.SENIOR_AE: "Senior AE",
    LeadRoute.NURTURE: "Nurture",
    LeadRoute.MQL: "MQL",
}


@dataclass(frozen=True)
class LeadConfig:
    """Weights, thresholds and routing targets of lead qualification."""

    #: Weight of Einstein's score in the enhanced score (the model gets the rest).
    einstein_weight: float = 0.4
    #: Enhanced scores strictly above this go to a senior AE.
    senior_ae_above: float = 80.0
    #: Enhanced scores strictly above this (and not above ``senior_ae_above``) are nurtured.
    nurture_above: float = 50.0
    #: User ids of the senior AEs (empty: the owner is left as it is).
    senior_ae_queue: tuple[str, ...] = ()
    #: Slack channel told about high-value leads.
    slack_channel: str = "#high-value-leads"
    #: Hours until the follow-up task of a high-value lead is due.
    follow_up_hours: int = 24
    #: Name of the nurture campaign the marketing platform enrols nurtured leads in.
    nurture_campaign: str = "Nurture - Educational Series"
    #: Who receives the marketing-automation hand-off of MQLs.
    marketing_automation: str = "marketing-automation"
    #: The values the org's ``Tech_Stack__c`` multi-select picklist allows (restricted:
    #: Salesforce rejects the whole update for one unknown value). Other technologies an
    #: enrichment names go into ``Company_Intelligence__c`` instead.
    tech_stack_values: tuple[str, ...] = (
        "Salesforce", "AWS", "Azure", "GCP", "Snowflake", "Kafka", "Python", "Java", "SAP",
        "HubSpot",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not 0.0 <= self.einstein_weight <= 1.0:
            raise ValueError("einstein_weight must be between 0 and 1")
        if self.nurture_above > self.senior_ae_above:
            raise ValueError("nurture_above must not exceed senior_ae_above")


@dataclass(frozen=True)
class LeadFact:
    """A lead to qualify, whichever fact announced it: its id, fields and the cause event."""

    lead_id: str
    fields: Mapping[str, FieldValue]
    cause: Event
    from_platform_event: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


def fact_from_change(change: RecordChanged) -> LeadFact | None:
    """The lead to qualify announced by a CDC change, or None when it starts nothing.

    A ``CREATE`` qualifies; so does a snapshot (read after a gap) of a lead that has no
    enhanced score yet. Echoes of our own writes, updates, deletes and scored leads don't.
    """
    if change.is_echo or change.header.entity_name != "Lead":
        return None
    if change.header.change_type in (ChangeType.CREATE, ChangeType.GAP_CREATE):
        pass
    elif not (change.is_snapshot and change.fields and change.fields.get(SCORE_FIELD) is None):
        return None
    if change.header.change_type in (ChangeType.DELETE, ChangeType.GAP_DELETE):
        return None
    return LeadFact(lead_id=change.subject, fields=flat_name(change.fields), cause=change)


def flat_name(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """``fields`` with CDC's compound name parts (``Name.FirstName``) also under their own names.

    Change events nest a Lead's name under ``Name``; snapshots read over REST carry
    ``FirstName`` and ``LastName`` flat. The flow reads the flat names.
    """
    flat = dict(fields)
    for name, value in fields.items():
        if name.startswith("Name."):
            flat.setdefault(name.removeprefix("Name."), value)
    return flat


def fact_from_platform_event(event: PlatformEventPublished) -> LeadFact | None:
    """The lead a ``New_Lead__e`` announces (its fields mapped to Lead fields), if any."""
    lead_id = event.fields.get("Lead_Id__c")
    if event.event_name != "New_Lead__e" or not isinstance(lead_id, str) or not lead_id:
        return None
    fields = {
        lead_field: event.fields.get(event_field)
        for event_field, lead_field in PLATFORM_EVENT_FIELDS.items()
        if event.fields.get(event_field) is not None
    }
    return LeadFact(lead_id=lead_id, fields=fields, cause=event, from_platform_event=True)


def scoring_record(fact: LeadFact, enrichment: Mapping[str, str]) -> dict[str, FieldValue]:
    """What the lead model is scored on: the lead's fields, gaps filled by the enrichment."""
    record: dict[str, FieldValue] = dict(fact.fields)
    for key, lead_field in (
        ("tech_stack", "Tech_Stack__c"),
        ("decision_makers", "Decision_Makers__c"),
    ):
        if record.get(lead_field) in (None, "") and enrichment.get(key):
            record[lead_field] = enrichment[key]
    budget = _finite(enrichment.get("estimated_budget"))
    if record.get("Estimated_Budget__c") is None and budget is not None:
        record["Estimated_Budget__c"] = budget
    return record


def einstein_score(fields: Mapping[str, FieldValue]) -> float | None:
    """Einstein's 0-100 score of the lead, bounded, or None when it has none."""
    raw = fields.get(EINSTEIN_FIELD)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return min(max(float(raw), 0.0), 100.0)
    except ValueError:
        return None


def enhanced_score(einstein: float | None, model: float, weight: float) -> float:
    """``weight x Einstein + (1 - weight) x model`` (the model alone without Einstein).

    Both scores are 0-100: ``model`` is the model's score on its percentile scale
    (:attr:`~agents.scoring.Score.model_score`).
    """
    if einstein is None:
        return round(model, 2)
    return round(weight * einstein + (1.0 - weight) * model, 2)


def route_of(score: float, config: LeadConfig) -> LeadRoute:
    """The route of an enhanced score."""
    if score > config.senior_ae_above:
        return LeadRoute.SENIOR_AE
    if score > config.nurture_above:
        return LeadRoute.NURTURE
    return LeadRoute.MQL


def senior_ae_for(lead_id: str, queue: Sequence[str]) -> str | None:
    """The AE of ``queue`` a lead goes to: balanced by a hash of the lead id, stable."""
    if not queue:
        return None
    digest = int.from_bytes(hashlib.sha256(lead_id.encode()).digest()[:8], "big")
    return queue[digest % len(queue)]


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def reasoning(einstein: float | None, score: Score, enhanced: float, config: LeadConfig) -> str:
    """``AI_Reasoning__c``: how the score was made and the factors that moved the model."""
    if einstein is None:
        head = (
            f"Enhanced score {enhanced:.2f}: model only (no Einstein score), "
            f"{score.model_score:.2f}"
        )
    else:
        head = (
            f"Enhanced score {enhanced:.2f} = {config.einstein_weight:g} x Einstein "
            f"{einstein:.2f} + {1 - config.einstein_weight:g} x model {score.model_score:.2f}"
        )
    if score.rank is not None:
        head += f" (the model's probability {score.percent:.2f} % ranks there among leads)"
    return _clip("\n".join([head, score.reasoning]), _LONG_TEXT)


def _finite(text: str | None) -> float | None:
    try:
        number = float(text or "")
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def split_tech_stack(answer: str, allowed: Sequence[str]) -> tuple[str, list[str]]:
    """``Tech_Stack__c`` from an enrichment answer (allowed values only) and the others."""
    lookup = {value.lower(): value for value in allowed}
    kept: list[str] = []
    others: list[str] = []
    for part in (p.strip() for p in re.split(r"[;\n]", answer)):
        if not part:
            continue
        known = lookup.get(part.lower())
        if known is not None:
            kept.append(known)
        else:
            others.append(part)
    return ";".join(dict.fromkeys(kept)), list(dict.fromkeys(others))


def _display_name(fields: Mapping[str, FieldValue]) -> str:
    name = " ".join(str(fields.get(k) or "") for k in ("FirstName", "LastName")).strip()
    return name or str(fields.get("Email") or "there")


def decide(
    fact: LeadFact, score: Score, enrichment: Mapping[str, str], config: LeadConfig
) -> Decision:
    """Everything qualifying ``fact`` produces (see the module docstring for the order)."""
    lead_id = fact.lead_id
    derive = Derivation(AGENT, fact.cause, identity=f"lead:{lead_id}")
    einstein = einstein_score(fact.fields)
    enhanced = enhanced_score(einstein, score.model_score, config.einstein_weight)
    route = route_of(enhanced, config)
    why = reasoning(einstein, score, enhanced, config)
    company = str(fact.fields.get("Company") or "")

    decision = LeadScored(
        **derive.envelope("decision", lead_id),
        model=score.model,
        features=dict(score.features),
        factors=score.factors,
        enrichment=dict(enrichment),
        einstein_score=einstein,
        model_score=score.model_score,
        enhanced_score=enhanced,
        route=route,
        reasoning=why,
    )
    emissions = [
        Emission(DECISIONS, lead_id, decision),
        derive.prediction(
            "lead_score",
            "Lead",
            lead_id,
            score.model,
            score.probability,
            score.features,
            score.factors,
        ),
    ]

    fields: dict[str, FieldValue] = {
        "AI_Enhanced_Score__c": enhanced,
        "AI_Reasoning__c": why,
        ROUTE_FIELD: ROUTE_LABEL[route],
    }
    stack, other_technologies = split_tech_stack(
        enrichment.get("tech_stack") or "", config.tech_stack_values
    )
    intelligence = enrichment.get("company_intelligence") or ""
    if other_technologies:
        intelligence = f"{intelligence}\nOther technologies: {', '.join(other_technologies)}"
    if intelligence.strip():
        fields["Company_Intelligence__c"] = _clip(intelligence.strip(), _LONG_TEXT)
    if enrichment.get("decision_makers"):
        fields["Decision_Makers__c"] = _clip(enrichment["decision_makers"], _LONG_TEXT)
    if stack:
        fields["Tech_Stack__c"] = stack
    budget = _finite(enrichment.get("estimated_budget"))
    if budget is not None:
        fields["Estimated_Budget__c"] = budget
    owner = senior_ae_for(lead_id, config.senior_ae_queue) if route is LeadRoute.SENIOR_AE else None
    if owner is not None:
        fields["OwnerId"] = owner
    emissions.append(derive.update("write_back", "Lead", lead_id, fields))

    steps = ["score", "write_back"]
    email = fact.fields.get("Email")
    data = {"lead_id": lead_id, "score": f"{enhanced:.2f}", "route": route.value}
    if route is LeadRoute.SENIOR_AE:
        due = (fact.cause.time + timedelta(hours=config.follow_up_hours)).date()
        task: dict[str, FieldValue] = {
            "Subject": _clip(f"Follow up: {company or lead_id} (score {enhanced:.0f})", _TEXT),
            "Description": _clip(why, 32_000),
            "Priority": "High",
            "Status": "Not Started",
            "ActivityDate": due.isoformat(),
            "WhoId": lead_id,
        }
        if owner is not None:
            task["OwnerId"] = owner
        emissions.append(derive.create("follow_up_task", "Task", lead_id, task))
        steps.append("follow_up_task")
        if email:
            emissions.append(
                derive.notify(
                    "personal_email",
                    lead_id,
                    NotificationChannel.EMAIL,
                    str(email),
                    "senior_ae_introduction",
                    _clip(f"{company or 'Your team'}: a conversation about your plans", _TEXT),
                    f"Hello {_display_name(fact.fields)}, thank you for your interest. "
                    "Your account executive will contact you within one business day.",
                    {**data, "owner_id": owner or ""},
                )
            )
            steps.append("personal_email")
        emissions.append(
            derive.notify(
                "slack",
                lead_id,
                NotificationChannel.SLACK,
                config.slack_channel,
                "high_value_lead",
                _clip(f"High-value lead: {company or lead_id} ({enhanced:.0f})", _TEXT),
                why,
                {**data, "owner_id": owner or ""},
            )
        )
        steps.append("slack")
    elif route is LeadRoute.NURTURE:
        emissions.append(
            derive.notify(
                "nurture",
                lead_id,
                NotificationChannel.EMAIL,
                str(email) if email else config.marketing_automation,
                "nurture_content_series",
                _clip(f"Enrol in {config.nurture_campaign}", _TEXT),
                "Add the lead to the nurture campaign and start the educational content series.",
                {**data, "campaign": config.nurture_campaign},
            )
        )
        steps.append("nurture")
    else:
        emissions.append(
            derive.notify(
                "mql_handoff",
                lead_id,
                NotificationChannel.EMAIL,
                config.marketing_automation,
                "mql_handoff",
                _clip(f"MQL hand-off: {company or lead_id}", _TEXT),
                "Marketing Qualified Lead: route to marketing automation.",
                data,
            )
        )
        steps.append("mql_handoff")

    emissions.append(
        derive.workflow(
            "run",
            WORKFLOW,
            run_id(AGENT, f"lead:{lead_id}"),
            None,
            COMPLETED,
            f"{route.value}: {', '.join(steps)}",
            lead_id,
            len(steps),
            len(steps),
            route=route.value,
        )
    )
    return Decision(tuple(emissions), outcome=route.value)
