"""The opportunity agent: CDC changes in, insights and onboarding starts out, in transactions.

For each batch read by :class:`~streams.worker.batch.TransactionalBatchProcessor` from
``sf.cdc.Opportunity`` this handler folds every change into its opportunity's snapshot
(CDC updates carry only the fields that changed) kept in a
:class:`~streams.worker.state.ChangelogState`, scores the changes that start an
insights run (SPEC.md Flow 2) in one ONNX call per day, and starts an onboarding saga
when a deal becomes Closed Won. The snapshots are written in the same transaction as
the decisions and the consumed offsets, so a worker killed at any point, or a broker
restart, neither loses a decision nor decides one from a snapshot that moved on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from agents import onboarding, opportunity_insights
from agents.base import Emission
from agents.scoring import score_as_of_their_days
from agents.snapshots import Snapshot
from ml.inference import LoadedModel
from schema_registry.events import RecordChanged
from sfe import metrics
from streams.worker.batch import Consumed
from streams.worker.state import ChangelogState

SOURCE_TOPIC = "sf.cdc.Opportunity"
#: The compacted topic of the snapshots (prefixed like every topic).
STATE_TOPIC = "sfe.worker.opportunities.state"
#: Key of the onboarding a snapshot started (a deal is onboarded once).
ONBOARDING_ID = "onboarding_id"


@dataclass(frozen=True)
class _Folded:
    """One change of the batch, with the snapshot after it and what it starts."""

    change: RecordChanged
    after: Snapshot
    scores: bool
    onboarding: tuple[Emission, ...]


class OpportunityHandler:
    """Turns a batch of opportunity changes into insights and onboarding starts."""

    def __init__(
        self,
        model: LoadedModel,
        insights: opportunity_insights.OpportunityConfig,
        onboarding_config: onboarding.OnboardingConfig,
        state: ChangelogState,
    ) -> None:
        """Score with the win ``model``; snapshots live in ``state``."""
        self.model = model
        self.insights = insights
        self.onboarding = onboarding_config
        self.state = state

    def fold(self, item: Consumed) -> _Folded | None:
        """Fold one consumed change into its snapshot (staged) and say what it starts."""
        change = item.event
        if not isinstance(change, RecordChanged):
            return None
        key = change.subject
        before = self.state.get(item.partition, key)
        after = opportunity_insights.fold(before, change)
        if before and before.get(ONBOARDING_ID):
            after[ONBOARDING_ID] = before[ONBOARDING_ID]
        scores = opportunity_insights.triggers(change, after)
        started: tuple[Emission, ...] = ()
        if onboarding.triggers(change, after, before) and not after.get(ONBOARDING_ID):
            saga, decision = onboarding.start(change, after, self.onboarding)
            started = decision.emissions
            after[ONBOARDING_ID] = saga[ONBOARDING_ID]
            metrics.WORKFLOW_RUNS.labels(onboarding.WORKFLOW, "started").inc()
        self.state.put(item.partition, key, after)
        return _Folded(change, after, scores, started)

    async def __call__(self, batch: Sequence[Consumed]) -> list[Emission]:
        """Every event the batch's changes start, in input order."""
        folded = [f for f in (self.fold(item) for item in batch) if f is not None]
        scored = [f for f in folded if f.scores]
        began = time.perf_counter()
        scores = iter(
            score_as_of_their_days(
                self.model,
                [
                    (f.change.time.date(), opportunity_insights.scoring_record(f.after))
                    for f in scored
                ],
            )
        )
        if scored:
            metrics.INFERENCE_LATENCY.labels(self.model.name).observe(time.perf_counter() - began)
        emissions: list[Emission] = []
        for item in folded:
            if item.scores:
                decision = opportunity_insights.decide(
                    item.change, item.after, next(scores), self.insights
                )
                emissions.extend(decision.emissions)
                metrics.OPPORTUNITIES_SYNCED.inc()
                metrics.WORKFLOW_RUNS.labels(opportunity_insights.WORKFLOW, decision.outcome).inc()
            emissions.extend(item.onboarding)
        return emissions
