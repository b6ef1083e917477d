"""`sfe worker`, `sfe churn run` and `sfe ecosystem respond`.

- ``sfe worker [--role R ...]`` runs the agents (all roles by default) until SIGTERM
  or Ctrl-C, with ``/metrics``, ``/healthz`` and ``/readyz`` on the metrics port.
- ``sfe churn run [--as-of DATE]`` runs the daily account batch now, over the accounts
  and usage it folds from the log itself, and appends its output in one transaction.
- ``sfe ecosystem respond`` stands in for the ecosystem's provisioning systems in
  development and tests: it answers every ``commands.provisioning`` request on
  ``provisioning.results`` (optionally failing a share of them).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from agents import snapshots, usage
from agents.base import Emission
from schema_registry.codec import Codec
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    ProvisioningRequested,
    RecordChanged,
    UpsellCandidateFlagged,
    UsageSignalReported,
)
from sfe.kafka_security import client_config
from sfe.metrics import MetricsServer
from sfe.settings import Settings
from simulator import ecosystem
from streams.ingest.appender import message_headers
from streams.worker.accounts import AccountState, account_batch, upsell_flag_day
from streams.worker.batch import Consumed, TransactionalBatchProcessor

EXIT_USAGE = 2


@click.command("worker")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["leads", "opportunities", "onboarding", "accounts"]),
    help="Run only these agents (repeatable); default: all of them.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics (default SFE_METRICS_PORT; 0 picks a free one).",
)
@click.pass_context
def worker(ctx: click.Context, roles: tuple[str, ...], metrics_port: int | None) -> None:
    """Run the workflow agents until SIGTERM or Ctrl-C."""
    from faust.worker import Worker as FaustWorker

    from sfe.cli import privacy_from_ctx, settings_from
    from streams.worker.app import (
        BATCH_ROLES,
        ROLES,
        DriftReporter,
        ModelMissing,
        build_worker,
        ensure_internal_topics,
    )

    settings = settings_from(ctx)
    if settings.log_level != "DEBUG":
        # Faust narrates every service start and stop at INFO; keep warnings and errors.
        for name in (
            "faust",
            "mode",
            "aiokafka",
            "streams.worker.app",
            "streams.worker.faust_transport",
        ):
            logging.getLogger(name).setLevel(logging.WARNING)
    chosen = roles or ROLES
    # Only the lead path reads personal values (sfe.privacy); the other roles never open them.
    privacy = privacy_from_ctx(ctx, settings) if "leads" in chosen else None
    try:
        built = build_worker(settings, chosen, privacy=privacy)
    except ModelMissing as exc:
        click.echo(f"sfe worker: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    if "onboarding" in chosen:
        ensure_internal_topics(settings)
    port = settings.metrics_port if metrics_port is None else metrics_port
    server = MetricsServer(
        settings.metrics_bind, port, ready=lambda: all(p.ready for p in built.processors)
    ).start()
    click.echo(f"worker roles {', '.join(chosen)}; metrics at {server.url}/metrics", err=True)
    drift = DriftReporter(list(built.models.values()), settings.drift_report_seconds).start()
    try:
        if set(chosen) <= BATCH_ROLES:
            # Only batch processors: no Faust agent to run, so no Faust consumer either.
            asyncio.run(_run_processors(built.processors))
        else:
            FaustWorker(
                built.app,
                loglevel=settings.log_level.lower(),
                quiet=True,
                override_logging=False,
                redirect_stdouts=False,
            ).execute_from_commandline()
    finally:
        drift.stop()
        server.stop()


async def _run_processors(processors: Sequence[TransactionalBatchProcessor]) -> None:
    """Run batch processors until SIGTERM or SIGINT, finishing the batch in hand."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    await asyncio.gather(*(processor.run(done) for processor in processors))


@click.group("churn")
def churn() -> None:
    """The daily churn assessment."""


def read_to_end(settings: Settings, topics: Sequence[str]) -> list[Consumed]:
    """Every committed event of ``topics`` (catalogue names), from the start to the end now."""
    prefix = settings.topic_prefix
    codec = Codec.from_settings(settings, prefix)
    consumer = Consumer(
        {
            **client_config(settings.kafka_bootstrap),
            "group.id": f"{prefix}sfe.churn-run.{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        assignment = []
        for name in topics:
            metadata = consumer.list_topics(prefix + name, timeout=10).topics[prefix + name]
            if metadata.error is not None:
                raise click.ClickException(
                    f"topic {prefix + name} is missing: run sfe topics ensure"
                )
            assignment += [TopicPartition(prefix + name, p, 0) for p in metadata.partitions]
        consumer.assign(assignment)
        remaining = {(tp.topic, tp.partition) for tp in assignment}
        found: list[Consumed] = []
        while remaining:
            for message in consumer.consume(5000, 1.0):
                error = message.error()
                where = (str(message.topic()), int(message.partition() or 0))
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(where)
                        continue
                    raise click.ClickException(f"reading {where[0]}: {error}")
                try:
                    event = codec.decode(where[0], message.value(), message_headers(message))
                except UndecodableEvent:
                    continue  # the live agents dead-letter it; the batch skips it
                found.append(
                    Consumed(
                        where[0].removeprefix(prefix), where[1], int(message.offset() or 0), event
                    )
                )
        return found
    finally:
        consumer.close()


def fold_accounts(events: Sequence[Consumed]) -> list[AccountState]:
    """Account snapshots, usage aggregates and last upsell flags folded from the log."""
    accounts: dict[str, Any] = {}
    aggregates: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for item in events:
        event = item.event
        if isinstance(event, RecordChanged):
            accounts[event.subject] = snapshots.evolve(accounts.get(event.subject), event)
        elif isinstance(event, UsageSignalReported):
            aggregates[event.subject] = usage.evolve(aggregates.get(event.subject), event)
        elif isinstance(event, UpsellCandidateFlagged):
            flags[event.subject] = max(flags.get(event.subject, ""), upsell_flag_day(event))
    return [
        AccountState(account_id, snap["fields"], aggregates.get(account_id), flags.get(account_id))
        for account_id, snap in accounts.items()
        if not snap.get("deleted")
    ]


def append_transactionally(settings: Settings, emissions: Sequence[Emission]) -> None:
    """Append ``emissions`` in one Kafka transaction (all or nothing)."""
    prefix = settings.topic_prefix
    codec = Codec.from_settings(settings, prefix)
    producer = Producer(
        {
            **client_config(settings.kafka_bootstrap),
            "transactional.id": f"{prefix}sfe.churn-run",
            "linger.ms": 10,
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    try:
        for emission in emissions:
            encoded = codec.encode(prefix + emission.topic, emission.event)
            while True:
                try:
                    producer.produce(
                        prefix + emission.topic,
                        key=emission.key.encode(),
                        value=encoded.value,
                        headers=list(encoded.headers),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.commit_transaction(60)
    except BaseException:
        producer.abort_transaction(30)
        raise


@churn.command("run")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Date of the assessment (YYYY-MM-DD); default: today in SFE_CHURN_TIMEZONE.",
)
@click.pass_context
def churn_run(ctx: click.Context, as_of: str | None) -> None:
    """Assess every account's churn risk now (and flag upsell candidates)."""
    from sfe.cli import settings_from
    from streams.worker.app import ModelMissing, load_models

    settings = settings_from(ctx)
    try:
        day = (
            date.fromisoformat(as_of)
            if as_of
            else datetime.now(ZoneInfo(settings.churn_timezone)).date()
        )
    except ValueError:
        raise click.BadParameter(
            f"{as_of!r} is not a date; try: sfe churn run --as-of 2026-11-26", param_hint="--as-of"
        ) from None
    try:
        models = load_models(settings, ["accounts"])
    except ModelMissing as exc:
        click.echo(f"sfe churn run: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    from streams.worker.app import Flows

    flows = Flows.from_settings(settings)
    states = fold_accounts(
        read_to_end(settings, ["sf.cdc.Account", "usage.signals", "decisions.upsell"])
    )
    emissions, summary = account_batch(
        states, day, models["churn"], models.get("upsell"), flows.churn, flows.upsell
    )
    append_transactionally(settings, emissions)
    click.echo(
        f"churn batch {day.isoformat()}: {summary.assessed} accounts assessed, "
        f"{summary.high_risk} high risk (cases opened), "
        f"{summary.upsell_candidates} upsell candidates; {len(emissions)} events appended"
    )


@click.group("ecosystem")
def ecosystem_group() -> None:
    """Stand-ins for the ecosystem's systems (development and tests)."""


@ecosystem_group.command("respond")
@click.option(
    "--failure-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of requests answered FAILED (decided by a hash of the request id).",
)
@click.option("--seed", default="", help="Changes which requests fail.")
@click.pass_context
def respond(ctx: click.Context, failure_rate: float, seed: str) -> None:
    """Answer commands.provisioning on provisioning.results until SIGTERM or Ctrl-C."""
    from sfe.cli import settings_from

    settings = settings_from(ctx)

    async def handle(batch: Sequence[Consumed]) -> list[Emission]:
        return [
            Emission(
                ecosystem.RESULT_TOPIC,
                item.event.account_id,
                ecosystem.respond(item.event, failure_rate, seed),
            )
            for item in batch
            if isinstance(item.event, ProvisioningRequested)
        ]

    processor = TransactionalBatchProcessor(
        name="ecosystem",
        bootstrap=settings.kafka_bootstrap,
        codec=Codec.from_settings(settings, settings.topic_prefix),
        topics=(ecosystem.REQUEST_TOPIC,),
        handler=handle,
        topic_prefix=settings.topic_prefix,
        batch_wait_seconds=0.05,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await processor.run(stop)

    click.echo("ecosystem responder: commands.provisioning -> provisioning.results", err=True)
    asyncio.run(main())
