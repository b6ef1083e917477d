"""The Faust application of ``sfe worker``: agents, tables, timers and the batch paths.

Roles (``sfe worker --role``) pick what a process runs; several processes with the
same roles share the partitions through their consumer groups.

- ``leads``: lead qualification on the transactional batch path
  (:mod:`streams.worker.batch`), run as a task of this app.
- ``opportunities``: opportunity insights on the transactional batch path too, also a
  task of this app (:mod:`streams.worker.opportunities`): each opportunity's snapshot
  (CDC updates carry only changed fields) is kept in a compacted state topic written
  in the same transaction as the insights, the onboarding starts on Closed Won and the
  consumed offsets.
- ``onboarding``: a Faust agent keyed by account on ``decisions.onboarding``,
  ``provisioning.results`` and the internal tick topic, keeping the sagas in the
  ``onboarding_sagas`` table; a timer schedules ticks for sagas with a due deadline
  (tables can only change inside agents, so the timer sends a tick rather than
  editing the saga).
- ``accounts``: Faust agents folding ``sf.cdc.Account`` (snapshots), ``usage.signals``
  (aggregates) and ``decisions.upsell`` (last flag) into tables, and the daily crontab
  running :func:`streams.worker.accounts.account_batch` over them.

The Faust roles keep tables in memory with their changelog topics in Kafka: a restarted
worker restores them from the changelog. Their processing is at least once
(ARCHITECTURE.md: Faust's exactly-once mode has open bugs); an agent appends its emissions and waits for the
broker's acknowledgement before updating its table and moving on, and every emitted
id is deterministic, so a redelivery repeats identical events that consumers skip.
Consumers read ``read_committed`` (:mod:`streams.worker.faust_transport`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import faust
from confluent_kafka import Producer

from agents import churn, onboarding, opportunity_insights, snapshots, upsell, usage
from agents.base import Emission
from agents.enrichment import provider_for
from agents.lead_qualification import LeadConfig
from ml.features.definitions import FEATURE_SETS
from ml.inference import LoadedModel, load_model
from ml.registry import Registry
from schema_registry.codec import Codec
from schema_registry.dead_letters import dead_letter
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    Event,
    OnboardingPlanned,
    ProvisioningFinished,
    RecordChanged,
    UpsellCandidateFlagged,
    UsageSignalReported,
)
from sfe import metrics
from sfe.kafka_security import client_config, faust_broker_credentials
from sfe.privacy.service import Privacy
from sfe.settings import Settings
from streams.lag import LagPublisher, faust_lags
from streams.worker import opportunities
from streams.worker.accounts import AccountState, account_batch, upsell_flag_day
from streams.worker.batch import TransactionalBatchProcessor
from streams.worker.faust_transport import ReadCommittedTransport
from streams.worker.leads import LeadQualificationHandler, input_topics
from streams.worker.opportunities import OpportunityHandler
from streams.worker.state import ChangelogState

log = logging.getLogger(__name__)

ROLES = ("leads", "opportunities", "onboarding", "accounts")
BATCH_ROLES = frozenset({"leads", "opportunities"})
"""Roles run on the transactional batch path, each a consumer of its own."""
FAUST_ROLES = frozenset(ROLES) - BATCH_ROLES
"""Roles run as Faust agents."""
PARTITIONS = 6
DLQ_TOPIC = "dlq.ingest"
TICK_TOPIC = "sfe.worker.onboarding.ticks"
#: Key of the results a saga received before its plan (see ``park`` in the agent).
PARKED = "parked_results"
MODEL_KINDS = {"leads": ("lead",), "opportunities": ("win",), "accounts": ("churn", "upsell")}


class ModelMissing(RuntimeError):
    """A role needs a model the registry has not promoted."""


class PipelineApp(faust.App):
    """A Faust app whose consumer reads ``read_committed``."""

    def _new_transport(self) -> Any:
        return ReadCommittedTransport(self.conf.broker_consumer, self)


def load_models(settings: Settings, roles: Sequence[str]) -> dict[str, LoadedModel]:
    """The promoted models the roles need; :class:`ModelMissing` names what to run."""
    registry = Registry(settings.models_path)
    models = {}
    for role in roles:
        for kind in MODEL_KINDS.get(role, ()):
            try:
                models[kind] = load_model(registry, kind, FEATURE_SETS[kind])
            except Exception as exc:
                raise ModelMissing(
                    f"role {role!r} needs a promoted {kind!r} model in {settings.models_path} "
                    f"({exc}); run: sfe train --all"
                ) from None
    return models


@dataclass
class Flows:
    """The configuration of every flow, from settings."""

    lead: LeadConfig
    opportunity: opportunity_insights.OpportunityConfig
    onboarding: onboarding.OnboardingConfig
    churn: churn.ChurnConfig
    upsell: upsell.UpsellConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> Flows:
        """Thresholds and targets of ``SFE_*`` settings."""
        return cls(
            lead=LeadConfig(
                einstein_weight=settings.lead_einstein_weight,
                senior_ae_above=settings.lead_senior_ae_above,
                nurture_above=settings.lead_nurture_above,
                senior_ae_queue=settings.senior_ae_queue,
                slack_channel=settings.lead_slack_channel,
            ),
            opportunity=opportunity_insights.OpportunityConfig(
                at_risk_below=settings.opportunity_at_risk_below
            ),
            onboarding=onboarding.OnboardingConfig(
                step_timeout_seconds=int(settings.onboarding_step_timeout_seconds),
                max_attempts=settings.onboarding_max_attempts,
                portal_domain=settings.onboarding_portal_domain,
            ),
            churn=churn.ChurnConfig(high_risk_above=settings.churn_high_risk_above),
            upsell=upsell.UpsellConfig(candidate_at_least=settings.upsell_candidate_at_least),
        )


@dataclass
class Worker:
    """A built worker: the Faust app and what its agents share."""

    app: faust.App
    settings: Settings
    roles: tuple[str, ...]
    codec: Codec
    flows: Flows
    models: dict[str, LoadedModel]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    processors: list[TransactionalBatchProcessor] = field(default_factory=list)


class Emitter:
    """Appends emissions with an idempotent librdkafka producer and waits for the acks.

    Faust's own producer also carries the tables' changelogs; under load its buffer
    backs up behind them, and an agent awaiting its emissions there stalled. Emissions
    go through their own producer instead, flushed in a worker thread.
    """

    def __init__(self, bootstrap: str, codec: Codec, prefix: str) -> None:
        self.codec = codec
        self.prefix = prefix
        self.producer = Producer(
            {
                **client_config(bootstrap),
                "enable.idempotence": True,
                "linger.ms": 2,
                "compression.type": "lz4",
            }
        )

    async def send(self, emissions: Sequence[Emission]) -> None:
        """Append every emission, in order, and return once all are acknowledged."""
        if not emissions:
            return
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for emission in emissions:
            encoded = self.codec.encode(self.prefix + emission.topic, emission.event)
            while True:
                try:
                    self.producer.produce(
                        self.prefix + emission.topic,
                        key=emission.key.encode(),
                        value=encoded.value,
                        headers=list(encoded.headers),
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
            metrics.EVENTS_PRODUCED.labels(emission.topic).inc()
        loop = asyncio.get_running_loop()
        remaining = await loop.run_in_executor(None, self.producer.flush, 60.0)
        if remaining or failures:
            raise RuntimeError(
                f"{remaining} emissions unacknowledged, errors: {'; '.join(failures[:3])}"
            )


async def _decode(worker: Worker, emitter: Emitter, agent: str, event: Any) -> Event | None:
    """The event in a Faust event's raw value, or None after dead-lettering it."""
    message = event.message
    topic = str(message.topic)
    metrics.EVENTS_CONSUMED.labels(topic.removeprefix(worker.settings.topic_prefix)).inc()
    headers = [(k, v) for k, v in (message.headers or [])]
    try:
        return worker.codec.decode(topic, event.value, headers)
    except UndecodableEvent as exc:
        letter = dead_letter(
            consumer=agent,
            topic=topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=event.value,
            headers=headers,
            error=exc,
            time=datetime.fromtimestamp(message.timestamp, UTC),
        )
        metrics.DEAD_LETTERS.labels(DLQ_TOPIC, exc.reason[:60]).inc()
        log.warning("undecodable record dead-lettered", extra={"agent": agent, "id": letter.id})
        await emitter.send([Emission(DLQ_TOPIC, letter.subject, letter)])
        return None


def _parked(worker: Worker, entry: dict[str, Any] | None) -> list[ProvisioningFinished]:
    """The results parked under a saga whose plan had not been read yet, in arrival order."""
    topic = worker.settings.topic_prefix + onboarding.RESULTS
    found = []
    for value, headers in (entry or {}).get(PARKED, []):
        event = worker.codec.decode(
            topic, bytes.fromhex(value), [(name, bytes.fromhex(raw)) for name, raw in headers]
        )
        if isinstance(event, ProvisioningFinished):
            found.append(event)
    return found


def publish_drift(models: Sequence[LoadedModel]) -> None:
    """Set ``sfe_feature_psi`` of every feature of ``models`` from their drift windows."""
    for model in models:
        values = model.drift.psi()
        for feature, value in (values or {}).items():
            metrics.FEATURE_DRIFT.labels(model.name, feature).set(value)


class DriftReporter:
    """Publishes the models' input drift every ``every_seconds`` from a background thread.

    A thread, not a Faust timer, so a worker running only the lead batch path (no Faust
    app) reports too; the windows it reads are thread-safe.
    """

    def __init__(self, models: Sequence[LoadedModel], every_seconds: float) -> None:
        """Report for ``models``; nothing happens until :meth:`start`."""
        self.models = list(models)
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift-reporter", daemon=True)

    def start(self) -> DriftReporter:
        """Start reporting; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reporting (the current report, if any, finishes)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                publish_drift(self.models)
            except Exception:  # a failed report must not end the reporting
                log.exception("publishing feature drift failed")


def ensure_internal_topics(settings: Settings) -> None:
    """Create the worker's own topics (the onboarding tick topic) if they are missing.

    They must exist before the worker subscribes: a topic that appears later is only
    picked up at the next rebalance.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(settings.kafka_bootstrap))
    name = settings.topic_prefix + TICK_TOPIC
    if name in admin.list_topics(timeout=30).topics:
        return
    retention = str(int(timedelta(days=1).total_seconds() * 1000))
    futures = admin.create_topics(
        [NewTopic(name, PARTITIONS, 1, config={"retention.ms": retention})]
    )
    try:
        futures[name].result(timeout=30)
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def build_worker(
    settings: Settings,
    roles: Sequence[str] = ROLES,
    *,
    models: dict[str, LoadedModel] | None = None,
    tick_seconds: float = 5.0,
    privacy: Privacy | None = None,
) -> Worker:
    """The worker for ``roles``: its Faust app with agents, tables, timers and tasks.

    ``privacy`` opens the lead path's personal values and seals what it derives from them.
    """
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLES)}")
    prefix = settings.topic_prefix
    datadir = settings.state_dir / "faust" / f"{prefix}worker"
    datadir.mkdir(parents=True, exist_ok=True)
    app = PipelineApp(
        f"{prefix}sfe-worker",
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        table_standby_replicas=0,
        topic_disable_leader=True,
        web_enabled=False,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        timezone=ZoneInfo(settings.churn_timezone),
    )
    codec = Codec.from_settings(settings, prefix)
    worker = Worker(
        app,
        settings,
        tuple(roles),
        codec,
        Flows.from_settings(settings),
        models if models is not None else load_models(settings, roles),
    )
    emitter = Emitter(settings.kafka_bootstrap, codec, prefix)

    def source(name: str) -> Any:
        return app.topic(prefix + name, key_serializer="raw", value_serializer="raw")

    if "leads" in roles:
        _lead_task(worker, privacy)
    if "opportunities" in roles:
        _opportunity_task(worker)
    if "onboarding" in roles:
        _onboarding_agent(worker, emitter, source, tick_seconds)
    if "accounts" in roles:
        _account_agents(worker, emitter, source)
    if set(roles) & FAUST_ROLES:
        _lag_timer(worker)
    return worker


def _lag_timer(worker: Worker, every_seconds: float = 5.0) -> None:
    app = worker.app
    publisher = LagPublisher(app.conf.id, worker.settings.topic_prefix)

    @app.timer(interval=every_seconds)
    async def report_consumer_lag() -> None:
        monitor = app.monitor
        publisher.publish(
            faust_lags(
                app.consumer.assignment(),
                monitor.tp_end_offsets,
                monitor.tp_committed_offsets,
            )
        )


def _lead_task(worker: Worker, privacy: Privacy | None) -> None:
    settings = worker.settings
    handler = LeadQualificationHandler(
        worker.models["lead"],
        provider_for(settings.enrichment_url, settings.enrichment_timeout_seconds),
        worker.flows.lead,
        privacy,
    )
    _batch_task(worker, "leads", input_topics(settings.lead_triggers), handler)


def _opportunity_task(worker: Worker) -> None:
    settings = worker.settings
    state = ChangelogState(
        name="opportunities",
        bootstrap=settings.kafka_bootstrap,
        topic=settings.topic_prefix + opportunities.STATE_TOPIC,
        partitions=PARTITIONS,
    )
    handler = OpportunityHandler(
        worker.models["win"], worker.flows.opportunity, worker.flows.onboarding, state
    )
    _batch_task(worker, "opportunities", (opportunities.SOURCE_TOPIC,), handler, state)


def _batch_task(
    worker: Worker,
    name: str,
    topics: Sequence[str],
    handler: Any,
    state: ChangelogState | None = None,
) -> None:
    """Run a transactional batch processor of ``topics`` as a task of the worker's app."""
    settings = worker.settings
    processor = TransactionalBatchProcessor(
        name=name,
        bootstrap=settings.kafka_bootstrap,
        codec=worker.codec,
        topics=topics,
        handler=handler,
        topic_prefix=settings.topic_prefix,
        batch_size=settings.worker_batch_size,
        batch_wait_seconds=settings.worker_batch_wait_ms / 1000,
        state=state,
    )
    first = not worker.processors
    worker.processors.append(processor)

    @worker.app.task
    async def run_batches() -> None:
        await processor.run(worker.stop)

    if first:

        def _stop_batches(app: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            worker.stop.set()

        worker.app.on_before_shutdown.connect(cast(Any, _stop_batches))


def _onboarding_agent(worker: Worker, emitter: Emitter, source: Any, tick_seconds: float) -> None:
    app, flows, prefix = worker.app, worker.flows, worker.settings.topic_prefix
    sagas = app.Table("onboarding_sagas", default=None, partitions=PARTITIONS)
    ticks = app.topic(
        prefix + TICK_TOPIC,
        key_serializer="raw",
        value_serializer="raw",
        partitions=PARTITIONS,
        internal=True,
        retention=timedelta(days=1),
    )
    channel = app.topic(
        prefix + onboarding.DECISIONS,
        prefix + onboarding.RESULTS,
        prefix + TICK_TOPIC,
        key_serializer="raw",
        value_serializer="raw",
    )

    def fold(account: str, onboarding_id: str, state: dict[str, Any], decision: Any) -> None:
        runs = dict(sagas.get(account) or {})
        runs[onboarding_id] = state
        sagas[account] = runs
        if state.get("status") != onboarding.RUNNING and decision.emissions:
            metrics.WORKFLOW_RUNS.labels(onboarding.WORKFLOW, str(state["status"]).lower()).inc()

    @app.agent(channel, name="agents.onboarding")
    async def onboarding_sagas(stream: Any) -> None:
        async for event in stream.events():
            topic = str(event.message.topic)
            account = (event.message.key or b"").decode()
            if topic == prefix + TICK_TOPIC:
                tick = json.loads(event.value)
                state = (sagas.get(account) or {}).get(tick["onboarding_id"])
                if state is not None and onboarding.in_flight(state):
                    now = datetime.fromisoformat(tick["now"])
                    state, decision = onboarding.on_tick(state, now, flows.onboarding)
                    await emitter.send(decision.emissions)
                    fold(account, tick["onboarding_id"], state, decision)
                continue  # a late tick of a finished saga has nothing to do
            fact = await _decode(worker, emitter, "agents.onboarding", event)
            if isinstance(fact, OnboardingPlanned):
                fresh = onboarding.state_from_plan(fact, flows.onboarding)
                known = (sagas.get(account) or {}).get(fresh["onboarding_id"])
                if known is None or PARKED in known:
                    fold(account, fresh["onboarding_id"], fresh, None)
                    for early in _parked(worker, known):
                        await apply_result(account, early)
            elif isinstance(fact, ProvisioningFinished):
                state = (sagas.get(account) or {}).get(fact.onboarding_id)
                if state is None or PARKED in state:
                    park(account, fact, state)
                else:
                    await apply_result(account, fact)

    async def apply_result(account: str, fact: ProvisioningFinished) -> None:
        state = (sagas.get(account) or {})[fact.onboarding_id]
        state, decision = onboarding.on_result(state, fact, flows.onboarding)
        await emitter.send(decision.emissions)
        fold(account, fact.onboarding_id, state, decision)

    def park(account: str, fact: ProvisioningFinished, parked: dict[str, Any] | None) -> None:
        # The plan and the results travel on different topics, so a fast system's result
        # can be read before the plan; it waits in the table for the plan.
        encoded = worker.codec.encode(prefix + onboarding.RESULTS, fact)
        entry = [encoded.value.hex(), [[name, value.hex()] for name, value in encoded.headers]]
        runs = dict(sagas.get(account) or {})
        runs[fact.onboarding_id] = {PARKED: [*(parked or {}).get(PARKED, []), entry]}
        sagas[account] = runs

    @app.timer(interval=tick_seconds)
    async def schedule_ticks() -> None:
        now = datetime.now(UTC)
        for account, runs in list(sagas.items()):
            for onboarding_id, state in (runs or {}).items():
                due = onboarding.next_deadline(state) if onboarding.in_flight(state) else None
                if due is not None and due <= now:
                    payload = {"onboarding_id": onboarding_id, "now": now.isoformat()}
                    await ticks.send(key=account.encode(), value=json.dumps(payload).encode())


def _account_agents(worker: Worker, emitter: Emitter, source: Any) -> None:
    app, flows, settings = worker.app, worker.flows, worker.settings
    accounts = app.Table("accounts", default=None, partitions=PARTITIONS)
    usage_table = app.Table("account_usage", default=None, partitions=PARTITIONS)
    upsell_flags = app.Table("upsell_flags", default=None, partitions=PARTITIONS)

    @app.agent(source("sf.cdc.Account"), name="agents.accounts")
    async def account_snapshots(stream: Any) -> None:
        async for event in stream.events():
            change = await _decode(worker, emitter, "agents.accounts", event)
            if isinstance(change, RecordChanged):
                accounts[change.subject] = snapshots.evolve(accounts.get(change.subject), change)

    @app.agent(source("usage.signals"), name="agents.usage")
    async def usage_signals(stream: Any) -> None:
        async for event in stream.events():
            signal = await _decode(worker, emitter, "agents.usage", event)
            if isinstance(signal, UsageSignalReported):
                usage_table[signal.subject] = usage.evolve(usage_table.get(signal.subject), signal)

    @app.agent(source(upsell.DECISIONS), name="agents.upsell_flags")
    async def upsell_flagged(stream: Any) -> None:
        async for event in stream.events():
            flagged = await _decode(worker, emitter, "agents.upsell_flags", event)
            if isinstance(flagged, UpsellCandidateFlagged):
                day = upsell_flag_day(flagged)
                if (upsell_flags.get(flagged.subject) or "") < day:
                    upsell_flags[flagged.subject] = day

    async def run_batch(as_of: date) -> None:
        states = [
            AccountState(
                account_id=account_id,
                fields=(snapshot or {}).get("fields") or {},
                aggregate=usage_table.get(account_id),
                last_upsell_flag=upsell_flags.get(account_id),
            )
            for account_id, snapshot in list(accounts.items())
            if snapshot and not snapshot.get("deleted")
        ]
        assigned = app.assignor.assigned_actives() if app.assignor else set()
        complete = sum(1 for tp in assigned if tp.topic.endswith("sf.cdc.Account")) >= PARTITIONS
        emissions, summary = account_batch(
            states,
            as_of,
            worker.models["churn"],
            worker.models.get("upsell"),
            flows.churn,
            flows.upsell,
            complete=complete,
        )
        await emitter.send(emissions)
        log.info(
            "account batch done",
            extra={
                "as_of": as_of.isoformat(),
                "assessed": summary.assessed,
                "high_risk": summary.high_risk,
                "upsell_candidates": summary.upsell_candidates,
            },
        )

    @app.crontab(settings.churn_schedule, timezone=ZoneInfo(settings.churn_timezone))
    async def daily_account_batch() -> None:
        await run_batch(datetime.now(ZoneInfo(settings.churn_timezone)).date())
