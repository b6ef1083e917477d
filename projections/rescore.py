"""Re-run a model's decisions over history with another model version, beside the live log.

``sfe replay --rescore --model lead:2`` reads the facts that start the model's decisions
(``sf.cdc.Lead``, and ``sf.events.New_Lead__e`` where ``SFE_LEAD_TRIGGERS`` reads it, for
``lead``; ``sf.cdc.Opportunity`` for ``win``), decides on them again with the chosen
version through the very same code the live worker runs, appends the new decisions to a
**separate topic namespace** and compares them with the live decisions of the same facts.

- **Lead** (``lead``): the lead worker's own handler
  (:class:`streams.worker.leads.LeadQualificationHandler`) decides, so facts, echoes,
  scoring per day and :func:`agents.lead_qualification.decide` are the live ones. The
  enrichment answers are the ones the live decision recorded (``LeadScored.enrichment``;
  ARCHITECTURE.md principle 2: a replay never asks the outside world again); a fact the
  live worker never decided gets the local, deterministic provider's answer. Each
  qualifying fact is decided once: facts of one lead are put in separate handler calls,
  because the live handler keeps one fact per lead *per batch* and live batches cannot be
  reproduced.
- **Win** (``win``): opportunity snapshots are folded from the first retained change
  (:func:`agents.snapshots.evolve`, :func:`agents.opportunity_insights.track_stage`, as
  the opportunity agent does, also before ``--from``), and every change that
  :func:`agents.opportunity_insights.triggers` accepts is scored as of its own date and
  decided by :func:`agents.opportunity_insights.decide`.
- **Churn, upsell**: not supported yet. Their decisions come from the daily account batch
  over folded state (``streams/worker/accounts.py``), not from one fact each, so there is
  no cause to match a new decision with.

The namespace is ``<SFE_TOPIC_PREFIX>rescore.<model>-v<version>.<run id>.`` followed by
the catalogue name. Only the decision topic, ``predictions`` and ``workflow.events`` are
written there: **commands are never emitted** (neither ``commands.salesforce`` nor
``commands.notifications``), so nothing can ever reach Salesforce or a person from a
rescore, whatever consumer is pointed at the namespace. The live topics are only read.

Decisions are matched with the live ones by their cause (``causation_id``, the id of the
fact). The :class:`Report` holds the band transition matrix (lead: route ``SENIOR_AE``,
``NURTURE``, ``MQL``; win: ``AT_RISK``, ``ON_TRACK``), the mean score change (0-100 scale:
the enhanced score of a lead, the win probability in percent) and the biggest movers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as Partition
from confluent_kafka.admin import AdminClient

from agents import lead_qualification, opportunity_insights, snapshots
from agents.base import PREDICTIONS, WORKFLOW_EVENTS, Emission
from agents.enrichment import Answer, Lead, LocalEnrichment
from agents.scoring import score_as_of_their_days
from ml.features.definitions import FEATURE_SETS
from ml.inference import LoadedModel, load_model
from ml.registry import Registry, parse_ref
from schema_registry.codec import Codec
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    Event,
    LeadScored,
    OpportunityInsightsComputed,
    PlatformEventPublished,
    RecordChanged,
)
from sfe import metrics
from sfe.kafka_security import client_config
from sfe.privacy.cipher import is_sealed
from sfe.privacy.service import Privacy
from sfe.settings import Settings
from streams.ingest.appender import message_headers
from streams.topic_admin import TopicAdmin, while_leaders_settle
from streams.topics import topic as catalogue_topic
from streams.worker.batch import Consumed
from streams.worker.leads import LeadQualificationHandler, input_topics

log = logging.getLogger(__name__)

#: Models whose decisions are made one fact at a time, and so can be rescored.
SUPPORTED = ("lead", "win")
#: Why the other models cannot be rescored yet.
UNSUPPORTED = {
    "churn": "churn decisions come from the daily account batch, not from one fact each",
    "upsell": "upsell decisions come from the daily account batch, not from one fact each",
}
NAMESPACE_ROOT = "rescore."
LEAD_BANDS = ("SENIOR_AE", "NURTURE", "MQL")
WIN_BANDS = ("AT_RISK", "ON_TRACK")


class RescoreError(Exception):
    """A rescore cannot start (unknown or unsupported model, missing topic); says what to do."""


# --------------------------------------------------------------------------------------
# Comparison (pure)


@dataclass(frozen=True)
class Outcome:
    """What one decision said about one fact: the record, its score (0-100) and band."""

    cause_id: str
    record_id: str
    score: float
    band: str
    model: str = ""
    time: datetime | None = None


@dataclass(frozen=True)
class Mover:
    """A fact whose score moved: its record, cause, old and new score and band."""

    record_id: str
    cause_id: str
    old_score: float
    new_score: float
    old_band: str
    new_band: str

    @property
    def change(self) -> float:
        """New score minus old score."""
        return round(self.new_score - self.old_score, 4)


@dataclass(frozen=True)
class Report:
    """How the rescored decisions differ from the live ones for the same facts."""

    model: str
    bands: tuple[str, ...]
    #: Facts decided by both, by (live band, rescored band).
    transitions: Mapping[tuple[str, str], int]
    #: Live decisions of the compared facts, by band; and the rescored ones.
    before: Mapping[str, int]
    after: Mapping[str, int]
    matched: int
    mean_change: float
    mean_abs_change: float
    movers: tuple[Mover, ...]
    #: Rescored facts without a live decision (never decided live, or decided in a batch
    #: that kept another fact of the same lead).
    only_rescored: int
    #: Live decisions (in the rescored time range) whose fact was not rescored.
    only_live: int
    #: Live decisions of the compared facts, by model reference (``lead:1``).
    live_models: Mapping[str, int]
    namespace: str = ""
    facts: int = 0
    records_read: int = 0
    commands_withheld: int = 0
    interrupted: bool = False
    topics: tuple[str, ...] = field(default=())
    #: Of ``facts``, those an interrupted run had decided before this one resumed it.
    resumed_facts: int = 0
    #: The run's id (its namespace's last part): ``--resume --run`` takes it.
    run_id: str = ""


def compare(
    model: str,
    bands: Sequence[str],
    live: Mapping[str, Outcome],
    rescored: Mapping[str, Outcome],
    top: int = 10,
    since: datetime | None = None,
) -> Report:
    """The :class:`Report` of ``rescored`` against ``live`` outcomes (both by cause id).

    ``since``: live decisions older than this are not counted as ``only_live``. Movers
    are the ``top`` largest absolute score changes (ties: record id, cause id), zero
    changes left out.
    """
    transitions: Counter[tuple[str, str]] = Counter()
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    models: Counter[str] = Counter()
    changes: list[float] = []
    movers: list[Mover] = []
    for cause, new in rescored.items():
        old = live.get(cause)
        if old is None:
            continue
        transitions[(old.band, new.band)] += 1
        before[old.band] += 1
        after[new.band] += 1
        models[old.model] += 1
        changes.append(new.score - old.score)
        mover = Mover(new.record_id, cause, old.score, new.score, old.band, new.band)
        if mover.change != 0 or old.band != new.band:
            movers.append(mover)
    movers.sort(key=lambda m: (-abs(m.change), m.record_id, m.cause_id))
    only_live = sum(
        1
        for cause, old in live.items()
        if cause not in rescored and (since is None or old.time is None or old.time >= since)
    )
    order = list(bands) + sorted({b for pair in transitions for b in pair} - set(bands))
    return Report(
        model=model,
        bands=tuple(order),
        transitions=dict(transitions),
        before={band: before[band] for band in order},
        after={band: after[band] for band in order},
        matched=len(changes),
        mean_change=round(sum(changes) / len(changes), 4) if changes else 0.0,
        mean_abs_change=round(sum(abs(c) for c in changes) / len(changes), 4) if changes else 0.0,
        movers=tuple(movers[:top]),
        only_rescored=sum(1 for cause in rescored if cause not in live),
        only_live=only_live,
        live_models=dict(sorted(models.items())),
    )


def render_text(report: Report) -> str:
    """The report for people: counts per band, the transition matrix, the movers."""
    lines = []
    state = " (INTERRUPTED: partial)" if report.interrupted else ""
    live = ", ".join(f"{ref} x{count}" for ref, count in report.live_models.items()) or "none"
    lines.append(f"rescore with {report.model}{state}: {report.facts:,} facts decided")
    if report.resumed_facts:
        lines.append(f"  resumed: {report.resumed_facts:,} of them before the resume")
    lines.append(f"  namespace: {report.namespace or '-'}")
    lines.append(
        f"  compared with live decisions of the same facts: {report.matched:,} "
        f"(live models: {live}); rescored only: {report.only_rescored:,}; "
        f"live only: {report.only_live:,}"
    )
    if report.commands_withheld:
        lines.append(f"  commands withheld (never emitted): {report.commands_withheld:,}")
    lines.append("")
    width = max([len("band"), *(len(b) for b in report.bands)])
    lines.append(f"{'band':<{width}}  {'before':>8}  {'after':>8}  {'change':>8}")
    for band in report.bands:
        was, now = report.before.get(band, 0), report.after.get(band, 0)
        lines.append(f"{band:<{width}}  {was:>8,}  {now:>8,}  {now - was:>+8,}")
    lines.append("")
    cell = max(8, width)
    lines.append("transitions (rows: before, columns: after)")
    lines.append(f"{'':<{width}}  " + "  ".join(f"{band:>{cell}}" for band in report.bands))
    for old in report.bands:
        counts = [report.transitions.get((old, new), 0) for new in report.bands]
        lines.append(f"{old:<{width}}  " + "  ".join(f"{n:>{cell},}" for n in counts))
    lines.append("")
    lines.append(
        f"mean score change: {report.mean_change:+.2f} "
        f"(mean absolute change {report.mean_abs_change:.2f}, scale 0-100)"
    )
    if not report.movers:
        lines.append("biggest movers: none (every compared score and band is unchanged)")
    else:
        lines.append(f"biggest movers (top {len(report.movers)}):")
        for m in report.movers:
            bands = f"{m.old_band} -> {m.new_band}" if m.old_band != m.new_band else m.new_band
            lines.append(
                f"  {m.record_id}  {m.old_score:6.2f} -> {m.new_score:6.2f} "
                f"({m.change:+.2f})  {bands}"
            )
    return "\n".join(lines)


def report_json(report: Report) -> dict[str, Any]:
    """The report for machines (``--json``)."""
    return {
        "model": report.model,
        "namespace": report.namespace,
        "topics": list(report.topics),
        "interrupted": report.interrupted,
        "run_id": report.run_id,
        "resumed_facts": report.resumed_facts,
        "records_read": report.records_read,
        "facts": report.facts,
        "matched": report.matched,
        "only_rescored": report.only_rescored,
        "only_live": report.only_live,
        "commands_withheld": report.commands_withheld,
        "live_models": dict(report.live_models),
        "bands": list(report.bands),
        "before": dict(report.before),
        "after": dict(report.after),
        "transitions": [
            {"from": old, "to": new, "count": count}
            for (old, new), count in sorted(report.transitions.items())
        ],
        "mean_score_change": report.mean_change,
        "mean_abs_score_change": report.mean_abs_change,
        "movers": [
            {
                "record_id": m.record_id,
                "cause_id": m.cause_id,
                "old_score": m.old_score,
                "new_score": m.new_score,
                "change": m.change,
                "old_band": m.old_band,
                "new_band": m.new_band,
            }
            for m in report.movers
        ],
    }


# --------------------------------------------------------------------------------------
# The flows that can be re-decided


#: Whether a consumed fact is to be decided (not before ``--from``, not already decided).
Due = Callable[[Consumed], bool]


class Flow(Protocol):
    """One model's decision path, re-run over consumed facts."""

    kind: str
    bands: tuple[str, ...]
    decision_topic: str
    source_topics: tuple[str, ...]
    #: Whether state is folded from the first retained fact (``--from`` only limits
    #: which facts are decided).
    folds: bool

    def outcome(self, event: Event) -> Outcome | None:
        """The outcome a decision event records (None: not this flow's decision)."""
        ...

    def remember(self, event: Event) -> None:
        """Keep what a live decision recorded that re-deciding needs."""
        ...

    def decide(self, batch: Sequence[Consumed], due: Due) -> list[Emission]:
        """The emissions of deciding ``batch``'s facts that are ``due`` (others only fold state)."""
        ...

    def close(self) -> None:
        """Release what the flow holds."""
        ...


def lead_outcome(event: Event) -> Outcome | None:
    """The outcome of a ``LeadScored`` decision (route as band, enhanced score)."""
    if not isinstance(event, LeadScored):
        return None
    return Outcome(
        cause_id=event.causation_id or event.id,
        record_id=event.subject,
        score=float(event.enhanced_score),
        band=event.route.value,
        model=f"{event.model.name}:{event.model.version}",
        time=event.time,
    )


def win_outcome(event: Event) -> Outcome | None:
    """The outcome of an ``OpportunityInsightsComputed`` decision (at risk or on track)."""
    if not isinstance(event, OpportunityInsightsComputed):
        return None
    return Outcome(
        cause_id=event.causation_id or event.id,
        record_id=event.subject,
        score=round(100.0 * float(event.win_probability), 2),
        band="AT_RISK" if event.at_risk else "ON_TRACK",
        model=f"{event.model.name}:{event.model.version}",
        time=event.time,
    )


class RecordedEnrichment:
    """Answers with what the live decisions recorded; the local provider for the others."""

    name = "recorded"

    def __init__(self, privacy: Privacy | None = None) -> None:
        """No answers known yet (see :meth:`record`); ``privacy`` opens sealed answers."""
        self.privacy = privacy
        self.answers: dict[str, Answer] = {}
        self.fallback = LocalEnrichment()
        self.pending: list[Answer | None] = []
        self.fallbacks = 0

    def record(self, cause_id: str, answer: Mapping[str, str]) -> None:
        """Remember the answer a live decision on ``cause_id`` recorded."""
        self.answers.setdefault(cause_id, dict(answer))

    def expect(self, facts: Sequence[lead_qualification.LeadFact]) -> None:
        """Prepare the answers of the next :meth:`enrich` call (``facts``, in order)."""
        self.pending = [self.answers.get(fact.cause.id) for fact in facts]
        if self.privacy is not None:
            self.pending = self._opened(self.pending, self.privacy)

    @staticmethod
    def _opened(answers: list[Answer | None], privacy: Privacy) -> list[Answer | None]:
        """The answers with sealed values opened in one key lookup; erased values dropped."""
        sealed = [
            (position, name, value)
            for position, answer in enumerate(answers)
            if answer is not None
            for name, value in answer.items()
            if is_sealed(value)
        ]
        if not sealed:
            return answers
        opened = privacy.open_values([(name, value) for _, name, value in sealed])
        result = [None if answer is None else dict(answer) for answer in answers]
        for (position, name, _), value in zip(sealed, opened, strict=True):
            entry = result[position]
            assert entry is not None
            if value is None:
                entry.pop(name, None)
            else:
                entry[name] = str(value)
        return result

    async def enrich(self, leads: Sequence[Lead]) -> list[Answer]:
        """The recorded answers of the expected facts; the local answer where none is."""
        if len(leads) != len(self.pending):
            raise RuntimeError(f"expected {len(self.pending)} leads to enrich, got {len(leads)}")
        found = []
        for lead, answer in zip(leads, self.pending, strict=True):
            if answer is None:
                self.fallbacks += 1
                answer = self.fallback.answer(lead)
            found.append(dict(answer))
        self.pending = []
        return found


class LeadFlow:
    """Lead qualification, decided by the live worker's handler."""

    kind: str = "lead"
    bands: tuple[str, ...] = LEAD_BANDS
    decision_topic: str = lead_qualification.DECISIONS
    folds: bool = False

    def __init__(
        self,
        model: LoadedModel,
        config: lead_qualification.LeadConfig,
        triggers: str,
        privacy: Privacy | None = None,
    ):
        """Decide with ``model`` and ``config`` on the topics ``triggers`` names."""
        self.source_topics: tuple[str, ...] = input_topics(triggers)
        self.enrichment = RecordedEnrichment(privacy)
        self.handler = LeadQualificationHandler(model, self.enrichment, config, privacy)
        self._loop = asyncio.new_event_loop()

    def outcome(self, event: Event) -> Outcome | None:
        """See :func:`lead_outcome`."""
        return lead_outcome(event)

    def remember(self, event: Event) -> None:
        """Keep the enrichment answers the live decision recorded."""
        if isinstance(event, LeadScored) and event.causation_id:
            self.enrichment.record(event.causation_id, event.enrichment)

    def decide(self, batch: Sequence[Consumed], due: Due) -> list[Emission]:
        """Every qualifying fact of ``batch`` that is ``due`` decided once (one lead per call)."""
        kept = [item for item in batch if due(item)]
        emissions: list[Emission] = []
        for part in _one_per_lead(kept):
            self.enrichment.expect(self.handler.facts(part))
            emissions.extend(self._loop.run_until_complete(self.handler(part)))
        return emissions

    def close(self) -> None:
        """Release the event loop."""
        self._loop.close()


def _lead_of(item: Consumed) -> str | None:
    event = item.event
    fact: lead_qualification.LeadFact | None = None
    if isinstance(event, RecordChanged):
        fact = lead_qualification.fact_from_change(event)
    elif isinstance(event, PlatformEventPublished):
        fact = lead_qualification.fact_from_platform_event(event)
    return None if fact is None else fact.lead_id


def _one_per_lead(batch: Sequence[Consumed]) -> list[list[Consumed]]:
    """``batch`` split into rounds, in order, where no lead has two qualifying facts."""
    rounds: list[list[Consumed]] = [[]]
    seen: Counter[str] = Counter()
    for item in batch:
        lead = _lead_of(item)
        if lead is None:
            continue
        index = seen[lead]
        seen[lead] += 1
        while len(rounds) <= index:
            rounds.append([])
        rounds[index].append(item)
    return [part for part in rounds if part]


class WinFlow:
    """Opportunity insights: snapshots folded as the opportunity agent does, then decided."""

    kind: str = "win"
    bands: tuple[str, ...] = WIN_BANDS
    decision_topic: str = opportunity_insights.DECISIONS
    source_topics: tuple[str, ...] = ("sf.cdc.Opportunity",)
    folds: bool = True

    def __init__(self, model: LoadedModel, config: opportunity_insights.OpportunityConfig):
        """Decide with ``model`` and ``config``."""
        self.model = model
        self.config = config
        self.snapshots: dict[str, snapshots.Snapshot] = {}

    def outcome(self, event: Event) -> Outcome | None:
        """See :func:`win_outcome`."""
        return win_outcome(event)

    def remember(self, event: Event) -> None:
        """Nothing: the win model's inputs are the folded snapshot alone."""

    def decide(self, batch: Sequence[Consumed], due: Due) -> list[Emission]:
        """Fold every change; decide those that are ``due`` and trigger an insights run."""
        chosen: list[tuple[RecordChanged, snapshots.Snapshot]] = []
        for item in batch:
            change = item.event
            if not isinstance(change, RecordChanged):
                continue
            after = opportunity_insights.fold(self.snapshots.get(change.subject), change)
            self.snapshots[change.subject] = after
            if due(item) and opportunity_insights.triggers(change, after):
                chosen.append((change, after))
        # Scored per fact as the agent does (as of the change's date), one call per day.
        scores = score_as_of_their_days(
            self.model,
            [(c.time.date(), opportunity_insights.scoring_record(a)) for c, a in chosen],
        )
        emissions: list[Emission] = []
        for (change, after), score in zip(chosen, scores, strict=True):
            emissions.extend(
                opportunity_insights.decide(change, after, score, self.config).emissions
            )
        return emissions

    def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------------------
# The run


def resolve_model(registry: Registry, ref: str) -> LoadedModel:
    """The model ``ref`` names (``lead:2``), loaded; :class:`RescoreError` says what works."""
    try:
        name, version = parse_ref(ref)
    except Exception as exc:
        raise RescoreError(f"{exc}; for example: --model lead:2") from None
    if name in UNSUPPORTED:
        raise RescoreError(
            f"rescoring {name!r} is not supported yet ({UNSUPPORTED[name]}); "
            f"supported models: {', '.join(SUPPORTED)} (e.g. --model lead:2)"
        )
    if name not in SUPPORTED:
        raise RescoreError(
            f"cannot rescore model {name!r}: supported models are {', '.join(SUPPORTED)} "
            "(see `sfe models list`)"
        )
    if version is None:
        known = ", ".join(f"{name}:{v}" for v in registry.versions(name)) or "none registered"
        raise RescoreError(f"name the version to rescore with, e.g. --model {name}:2 ({known})")
    try:
        return load_model(registry, ref, FEATURE_SETS[name])
    except Exception as exc:
        known = ", ".join(f"{name}:{v}" for v in registry.versions(name)) or "none registered"
        raise RescoreError(
            f"cannot load {ref}: {exc} (versions: {known}; see `sfe models list`)"
        ) from None


def namespace_for(model: LoadedModel, run_id: str) -> str:
    """The namespace prefix of a run: ``rescore.<model>-v<version>.<run id>.``."""
    return f"{NAMESPACE_ROOT}{model.name}-v{model.version}.{run_id}."


def delete_namespace(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic under ``prefix`` (which must name a rescore namespace)."""
    if NAMESPACE_ROOT not in prefix or not prefix.endswith("."):
        raise RescoreError(
            f"{prefix!r} is not a rescore namespace (expected e.g. rescore.lead-v2.1a2b3c4d.)"
        )
    admin = AdminClient(client_config(bootstrap))
    names = sorted(t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix))
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=60)
    # Return once the brokers' metadata no longer lists them (a new run may reuse nothing,
    # but listings right after the call would still show them).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        name in admin.list_topics(timeout=30).topics for name in names
    ):
        time.sleep(0.2)
    return names


def build_flow(
    settings: Settings, model: LoadedModel, privacy: Privacy | None = None
) -> LeadFlow | WinFlow:
    """The flow of ``model`` configured as the live worker configures it.

    ``privacy`` opens the lead facts' personal values, as the live worker does.
    """
    from streams.worker.app import Flows  # the worker's settings-to-config mapping

    flows = Flows.from_settings(settings)
    if model.name == "lead":
        return LeadFlow(model, flows.lead, settings.lead_triggers, privacy)
    return WinFlow(model, flows.opportunity)


ProgressFn = Callable[[int, int], None]
#: A position per (full topic name, partition).
Positions = dict[tuple[str, int], int]


class Rescore:
    """One rescore run of ``flow`` into a fresh namespace, or an interrupted run resumed.

    Every batch of facts is decided and appended in **one Kafka transaction** together
    with the run's consumed positions (committed for the consumer group
    ``<prefix>sfe-rescore-<run id>``), so an interrupted run (signal, error, crash)
    holds exactly the decisions of its committed batches. Resumed (``resume=True`` with
    the run's id), it reads the decisions already in its namespace back for the report
    and decides only the facts after the committed positions: nothing is decided twice.
    """

    def __init__(
        self,
        settings: Settings,
        model: LoadedModel,
        flow: Flow,
        since: datetime | None = None,
        *,
        top: int = 10,
        batch_size: int = 5000,
        run_id: str | None = None,
        resume: bool = False,
        progress: ProgressFn = lambda done, total: None,
    ) -> None:
        """Rescore facts from ``since`` (None: all retained) with ``model`` through ``flow``."""
        if resume and run_id is None:
            raise ValueError("resuming needs the interrupted run's id")
        self.settings = settings
        self.model = model
        self.flow = flow
        self.since = since
        self.top = top
        self.batch_size = batch_size
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.resume = resume
        self.progress = progress
        self.live_prefix = settings.topic_prefix
        self.namespace = self.live_prefix + namespace_for(model, self.run_id)
        self.group = f"{self.live_prefix}sfe-rescore-{self.run_id}"
        self.codec = Codec.from_settings(settings, self.live_prefix)
        self.output_codec = Codec.from_settings(settings, self.namespace)
        #: Catalogue topics written in the namespace; commands never are.
        self.outputs = (flow.decision_topic, PREDICTIONS, WORKFLOW_EVENTS)
        self.live: dict[str, Outcome] = {}
        self.rescored: dict[str, Outcome] = {}
        #: Facts an interrupted run had decided before this one resumed it.
        self.resumed_facts = 0
        self.records_read = 0
        self.withheld = 0
        self.failures: list[str] = []
        self._group_metadata: Any = None

    @property
    def topics(self) -> tuple[str, ...]:
        """The namespace's topics (full names)."""
        return tuple(self.namespace + name for name in self.outputs)

    def run(self, stop: threading.Event) -> Report:
        """Create (or reopen) the namespace, read live decisions, re-decide the facts, compare."""
        self._check_sources()
        if self.resume:
            self._check_namespace()
        else:
            TopicAdmin(self.settings.kafka_bootstrap).ensure(
                [catalogue_topic(name).prefixed(self.namespace) for name in self.outputs]
            )
        producer = Producer(
            {
                **client_config(self.settings.kafka_bootstrap),
                # One id per run: a resumed run fences a zombie of the interrupted one and
                # aborts whatever transaction it left open.
                "transactional.id": f"sfe-rescore-{self.namespace}",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )
        producer.init_transactions(60)
        interrupted = False
        try:
            for item in self._read([self.flow.decision_topic], None, stop):
                outcome = self.flow.outcome(item.event)
                if outcome is not None:
                    self.live.setdefault(outcome.cause_id, outcome)
                    self.flow.remember(item.event)
            sources = [self.live_prefix + name for name in self.flow.source_topics]
            decided: Positions = {}
            if self.resume:
                decided, since = self._committed(sources)
                if decided:  # the interrupted run's --from holds, whatever is given now
                    self.since = since
            # Committed with the positions, so that a resumed run decides the same facts.
            run_metadata = json.dumps(
                {"since": None if self.since is None else self.since.isoformat()}
            )
            if self.resume:
                self._read_back(stop)
            start = None if self.flow.folds else self.since
            # Folding flows read from the first retained fact; the others skip what is decided.
            skip_to = {} if self.flow.folds else decided
            total = self._total(self.flow.source_topics, start, skip_to)
            done = 0

            def due(item: Consumed) -> bool:
                where = (self.live_prefix + item.topic, item.partition)
                return (self.since is None or item.event.time >= self.since) and (
                    item.offset >= decided.get(where, 0)
                )

            for batch, reached in self._batches(self.flow.source_topics, start, stop, skip_to):
                emissions = self.flow.decide(batch, due)
                producer.begin_transaction()
                try:
                    self._append(producer, emissions)
                    advanced = [
                        Partition(topic, partition, offset, metadata=run_metadata)
                        for (topic, partition), offset in sorted(reached.items())
                        if offset > decided.get((topic, partition), 0)
                    ]
                    if advanced:
                        producer.send_offsets_to_transaction(advanced, self._group_metadata, 60)
                    producer.commit_transaction(60)
                except BaseException:
                    producer.abort_transaction(60)
                    raise
                done += len(batch)
                self.progress(done, total)
        except _Stopped:
            interrupted = True
        finally:
            remaining = producer.flush(60)
            self.flow.close()
        if remaining or self.failures:
            raise RuntimeError(
                f"{remaining} rescored events unacknowledged, "
                f"{len(self.failures)} failed: {'; '.join(self.failures[:3])}"
            )
        report = compare(
            f"{self.model.name}:{self.model.version}",
            self.flow.bands,
            self.live,
            self.rescored,
            self.top,
            self.since,
        )
        return _with(
            report,
            namespace=self.namespace,
            topics=self.topics,
            facts=len(self.rescored),
            records_read=self.records_read,
            commands_withheld=self.withheld,
            interrupted=interrupted,
            resumed_facts=self.resumed_facts,
            run_id=self.run_id,
            # A partial run has not rescored every live fact: "live only" means nothing yet.
            only_live=0 if interrupted else report.only_live,
        )

    def _check_sources(self) -> None:
        consumer = self._consumer()
        try:
            for name in (*self.flow.source_topics, self.flow.decision_topic):
                full = self.live_prefix + name
                metadata = consumer.list_topics(full, timeout=10).topics.get(full)
                if metadata is None or metadata.error is not None:
                    raise RescoreError(f"topic {full} is missing: run sfe topics ensure")
        finally:
            consumer.close()

    def _check_namespace(self) -> None:
        consumer = self._consumer()
        try:
            for full in self.topics:
                metadata = consumer.list_topics(full, timeout=10).topics.get(full)
                if metadata is None or metadata.error is not None:
                    raise RescoreError(
                        f"run {self.run_id} of {self.model.name}:{self.model.version} cannot be "
                        f"resumed: its topic {full} is missing (runs: `sfe replay --rescore "
                        f"--model {self.model.name}:{self.model.version} --resume`)"
                    )
        finally:
            consumer.close()

    def _committed(self, topics: Sequence[str]) -> tuple[Positions, datetime | None]:
        """The next fact to decide per source partition, and ``--from``, as committed."""
        consumer = self._consumer()
        try:
            partitions = [
                Partition(topic, number)
                for topic in topics
                for number in sorted(
                    consumer.list_topics(topic, timeout=30).topics[topic].partitions
                )
            ]
            committed = [
                p
                for p in while_leaders_settle(lambda: consumer.committed(partitions, 30))
                if p.offset >= 0
            ]
            since = None
            for partition in committed[:1]:
                stored = json.loads(partition.metadata or "{}").get("since")
                since = None if stored is None else datetime.fromisoformat(stored)
            return {(p.topic, p.partition): p.offset for p in committed}, since
        finally:
            consumer.close()

    def _read_back(self, stop: threading.Event) -> None:
        """The decisions the interrupted run committed in the namespace, for the report."""
        topic = self.namespace + self.flow.decision_topic
        for item in self._read([self.flow.decision_topic], None, stop, self.namespace):
            outcome = self.flow.outcome(item.event)
            if outcome is not None and outcome.cause_id not in self.rescored:
                self.rescored[outcome.cause_id] = outcome
        self.resumed_facts = len(self.rescored)
        log.info("resumed %s: %d decisions already in %s", self.run_id, self.resumed_facts, topic)

    def _append(self, producer: Producer, emissions: Iterable[Emission]) -> None:
        for emission in emissions:
            if emission.topic not in self.outputs:
                self.withheld += 1
                continue
            outcome = self.flow.outcome(emission.event)
            if outcome is not None:
                self.rescored.setdefault(outcome.cause_id, outcome)
            topic = self.namespace + emission.topic
            encoded = self.output_codec.encode(topic, emission.event)
            while True:
                try:
                    producer.produce(
                        topic,
                        key=emission.key.encode(),
                        value=encoded.value,
                        headers=list(encoded.headers),
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                **client_config(self.settings.kafka_bootstrap),
                "group.id": self.group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )

    def _assignment(
        self,
        consumer: Consumer,
        topics: Sequence[str],
        start: datetime | None,
        skip_to: Positions,
        prefix: str,
    ) -> tuple[list[Partition], int]:
        partitions = []
        for name in topics:
            full = prefix + name
            metadata = consumer.list_topics(full, timeout=30).topics[full]
            partitions += [Partition(full, p) for p in sorted(metadata.partitions)]
        if start is not None:
            stamp = int(start.timestamp() * 1000)
            wanted = [Partition(p.topic, p.partition, stamp) for p in partitions]
            partitions = while_leaders_settle(lambda: consumer.offsets_for_times(wanted, 10))
        total = 0
        for partition in partitions:
            low, high = while_leaders_settle(partial(consumer.get_watermark_offsets, partition, 10))
            if partition.offset < 0:
                partition.offset = OFFSET_BEGINNING if start is None else high
            first = max(low, partition.offset)
            resumed = skip_to.get((partition.topic, partition.partition), -1)
            if resumed > first:
                partition.offset = first = resumed
            total += max(0, high - first)
        return partitions, total

    def _total(self, topics: Sequence[str], start: datetime | None, skip_to: Positions) -> int:
        consumer = self._consumer()
        try:
            return self._assignment(consumer, topics, start, skip_to, self.live_prefix)[1]
        finally:
            consumer.close()

    def _read(
        self,
        topics: Sequence[str],
        start: datetime | None,
        stop: threading.Event,
        prefix: str | None = None,
    ) -> Iterable[Consumed]:
        for batch, _ in self._batches(topics, start, stop, {}, count=False, prefix=prefix):
            yield from batch

    def _batches(
        self,
        topics: Sequence[str],
        start: datetime | None,
        stop: threading.Event,
        skip_to: Positions,
        count: bool = True,
        prefix: str | None = None,
    ) -> Iterable[tuple[list[Consumed], Positions]]:
        """Decoded records of ``topics`` up to their end now, in batches; undecodable skipped.

        Each batch comes with the next offset to read per partition it touched (the
        undecodable records included). ``skip_to`` moves partitions' starts further on.
        """
        prefix = self.live_prefix if prefix is None else prefix
        codec = self.codec if prefix == self.live_prefix else self.output_codec
        consumer = self._consumer()
        self._group_metadata = consumer.consumer_group_metadata()
        try:
            partitions, _ = self._assignment(consumer, topics, start, skip_to, prefix)
            pending = {(p.topic, p.partition) for p in partitions}
            consumer.assign(partitions)
            while pending:
                if stop.is_set():
                    raise _Stopped
                batch: list[Consumed] = []
                reached: Positions = {}
                for message in consumer.consume(self.batch_size, 1.0):
                    error = message.error()
                    where = (str(message.topic()), int(message.partition() or 0))
                    if error is not None and error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(where)
                        continue
                    if error is not None:
                        raise KafkaException(error)
                    offset = int(message.offset() or 0)
                    reached[where] = max(reached.get(where, 0), offset + 1)
                    try:
                        event = codec.decode(where[0], message.value(), message_headers(message))
                    except UndecodableEvent:
                        continue  # the live worker dead-lettered it; nothing to decide
                    batch.append(Consumed(where[0].removeprefix(prefix), where[1], offset, event))
                if count:
                    self.records_read += len(batch)
                    metrics.REPLAY_EVENTS.labels(task=f"rescore-{self.model.name}").inc(len(batch))
                if reached:
                    yield batch, reached
        finally:
            consumer.close()


def find_runs(bootstrap: str, live_prefix: str, model: LoadedModel) -> list[str]:
    """Run ids of ``model``'s rescores whose namespace exists under ``live_prefix``."""
    root = live_prefix + namespace_for(model, "").removesuffix(".")
    admin = AdminClient(client_config(bootstrap))
    return sorted(
        {
            topic.removeprefix(root).split(".", 1)[0]
            for topic in admin.list_topics(timeout=30).topics
            if topic.startswith(root) and "." in topic.removeprefix(root)
        }
    )


class _Stopped(Exception):
    """Raised inside the read loop when the stop event is set."""


def _with(report: Report, **changes: Any) -> Report:
    return replace(report, **changes)
