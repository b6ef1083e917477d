"""The lead-qualification agent: batches of new leads in, decisions and commands out.

For each batch read by :class:`~streams.worker.batch.TransactionalBatchProcessor` from
``sf.cdc.Lead`` (and ``sf.events.New_Lead__e`` where configured) this handler keeps
the facts that start a qualification, asks the enrichment provider about all of them
at once, scores them in one batched ONNX call and lets
:func:`agents.lead_qualification.decide` say what to emit. A lead announced twice in
one batch (its CDC create and its platform event) is qualified once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from agents import lead_qualification as flow
from agents.base import Emission
from agents.enrichment import EnrichmentProvider
from agents.scoring import score_as_of_their_days
from ml.inference import LoadedModel
from schema_registry.events import LeadRoute, PlatformEventPublished, RecordChanged
from sfe import metrics
from sfe.privacy.service import Privacy
from streams.worker.batch import Consumed

LEAD_TOPIC = "sf.cdc.Lead"
NEW_LEAD_TOPIC = "sf.events.New_Lead__e"
_BANDS = {LeadRoute.SENIOR_AE: "high", LeadRoute.NURTURE: "nurture", LeadRoute.MQL: "mql"}


def input_topics(triggers: str) -> tuple[str, ...]:
    """The topics the agent reads for ``SFE_LEAD_TRIGGERS`` (cdc, platform_event, both)."""
    return {
        "cdc": (LEAD_TOPIC,),
        "platform_event": (NEW_LEAD_TOPIC,),
        "both": (LEAD_TOPIC, NEW_LEAD_TOPIC),
    }[triggers]


class LeadQualificationHandler:
    """Turns a batch of consumed lead facts into the flow's emissions."""

    def __init__(
        self,
        model: LoadedModel,
        enrichment: EnrichmentProvider,
        config: flow.LeadConfig,
        privacy: Privacy | None = None,
    ) -> None:
        """With ``privacy``, facts are opened before deciding and emissions sealed after."""
        self.model = model
        self.enrichment = enrichment
        self.config = config
        self.privacy = privacy

    def facts(self, batch: Sequence[Consumed]) -> list[flow.LeadFact]:
        """The facts of ``batch`` that start a qualification, one per lead, in order.

        The personal values the flow reads are opened (:data:`flow.PERSONAL_INPUTS`; those
        of erased subjects read as absent), the others read as absent.
        """
        found: dict[str, flow.LeadFact] = {}
        events = [item.event for item in batch]
        if self.privacy is not None:
            events = self.privacy.unseal(events, only=flow.PERSONAL_INPUTS)
        for event in events:
            fact: flow.LeadFact | None = None
            if isinstance(event, RecordChanged):
                fact = flow.fact_from_change(event)
            elif isinstance(event, PlatformEventPublished):
                fact = flow.fact_from_platform_event(event)
            if fact is None:
                continue
            known = found.get(fact.lead_id)
            # The CDC create carries the whole record: prefer it to the platform event.
            if known is None or (known.from_platform_event and not fact.from_platform_event):
                found[fact.lead_id] = fact
        return list(found.values())

    async def __call__(self, batch: Sequence[Consumed]) -> list[Emission]:
        """Every event the batch's qualifications emit, in input order."""
        facts = self.facts(batch)
        if not facts:
            return []
        answers = await self.enrichment.enrich([fact.fields for fact in facts])
        records = [flow.scoring_record(f, a) for f, a in zip(facts, answers, strict=True)]
        began = time.perf_counter()
        scores = score_as_of_their_days(
            self.model, [(f.cause.time.date(), r) for f, r in zip(facts, records, strict=True)]
        )
        metrics.INFERENCE_LATENCY.labels(self.model.name).observe(time.perf_counter() - began)
        emissions: list[Emission] = []
        for fact, score, answer in zip(facts, scores, answers, strict=True):
            decision = flow.decide(fact, score, answer, self.config)
            emissions.extend(decision.emissions)
            metrics.LEADS_PROCESSED.labels(_BANDS[LeadRoute(decision.outcome)]).inc()
            metrics.MODEL_SCORES.labels(self.model.name, str(self.model.version)).observe(
                score.probability
            )
            metrics.WORKFLOW_RUNS.labels(flow.WORKFLOW, "completed").inc()
        if self.privacy is not None:
            sealed = self.privacy.seal([emission.event for emission in emissions])
            emissions = [
                replace(emission, event=event)
                for emission, event in zip(emissions, sealed, strict=True)
            ]
        return emissions
