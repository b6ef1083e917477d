"""The daily account batch: churn risk for every account, then upsell candidates.

One function, :func:`account_batch`, serves both ways the batch runs: the worker's
crontab (02:00 in the configured time zone by default) over the accounts its Faust
tables hold, and ``sfe churn run`` over accounts it folds from the log itself. Every
account is scored by the churn model and by the upsell network in one batched ONNX
call each, on the record :func:`agents.usage.features` builds from the Account's
snapshot and its usage aggregates as of the batch date.

Ids derive from the batch date (:func:`agents.churn.batch_cause`), so running the batch
twice on one day yields the same events and the sinks do nothing twice. An account
flagged as an upsell candidate is not flagged again for ``upsell_quiet_days``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from agents import churn, upsell, usage
from agents.base import Emission
from agents.scoring import score_records
from ml.inference import LoadedModel
from schema_registry.events import UpsellCandidateFlagged
from sfe import metrics

#: Days an upsell candidate is not flagged again (a new task each day would be noise).
UPSELL_QUIET_DAYS = 30


@dataclass(frozen=True)
class AccountState:
    """What the batch knows about one account: its fields and its usage aggregate."""

    account_id: str
    fields: Mapping[str, Any]
    aggregate: Mapping[str, Any] | None = None
    #: ISO date of the last upsell flag, if any.
    last_upsell_flag: str | None = None


@dataclass
class BatchSummary:
    """Counts of one batch run, for logs, metrics and the CLI."""

    as_of: date
    assessed: int = 0
    high_risk: int = 0
    upsell_candidates: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def account_batch(
    accounts: Iterable[AccountState],
    as_of: date,
    churn_model: LoadedModel,
    upsell_model: LoadedModel | None,
    churn_config: churn.ChurnConfig,
    upsell_config: upsell.UpsellConfig,
    *,
    complete: bool = True,
) -> tuple[list[Emission], BatchSummary]:
    """The batch's emissions for ``accounts`` and its summary.

    ``complete`` says the batch covers every account (a single worker, or ``sfe churn
    run``): only then is the batch run recorded as completed with its counts.
    """
    chosen = [a for a in accounts if a.fields.get("IsDeleted") is not True]
    summary = BatchSummary(as_of)
    cause = churn.batch_cause(as_of)
    emissions: list[Emission] = [churn.batch_started(as_of)]
    records = [
        usage.features(dict(a.aggregate) if a.aggregate else None, a.fields, as_of) for a in chosen
    ]
    for account, record, score in zip(
        chosen, records, score_records(churn_model, records, as_of), strict=True
    ):
        decision = churn.decide(cause, account.account_id, record, score, as_of, churn_config)
        emissions.extend(decision.emissions)
        summary.assessed += 1
        summary.outcomes[decision.outcome] = summary.outcomes.get(decision.outcome, 0) + 1
        if decision.outcome == "high_risk":
            summary.high_risk += 1
            metrics.CHURN_CASES_OPENED.inc()
        metrics.MODEL_SCORES.labels(churn_model.name, str(churn_model.version)).observe(
            score.probability
        )
    if upsell_model is not None:
        quiet_since = (as_of - timedelta(days=UPSELL_QUIET_DAYS)).isoformat()
        eligible = [
            (a, r)
            for a, r in zip(chosen, records, strict=True)
            if a.last_upsell_flag is None or a.last_upsell_flag < quiet_since
        ]
        scores = score_records(upsell_model, [r for _, r in eligible], as_of)
        for (account, record), score in zip(eligible, scores, strict=True):
            decision = upsell.decide(cause, account.account_id, record, score, upsell_config)
            emissions.extend(decision.emissions)
            if decision.outcome == "candidate":
                summary.upsell_candidates += 1
                metrics.WORKFLOW_RUNS.labels(upsell.WORKFLOW, "completed").inc()
    if complete:
        emissions.append(churn.batch_finished(cause, summary.assessed, summary.high_risk))
    metrics.WORKFLOW_RUNS.labels(churn.WORKFLOW, "completed").inc(summary.assessed)
    return emissions, summary


def upsell_flag_day(event: UpsellCandidateFlagged) -> str:
    """The ISO day an upsell flag was raised (the batch date it derives from)."""
    return event.time.date().isoformat()
