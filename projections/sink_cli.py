"""`sfe sink salesforce`: apply ``commands.salesforce`` to the org until SIGTERM or Ctrl-C.

A stop signal lets the batch in hand finish (or abandons it, uncommitted, while it
waits for budget or a retry), publishes its results and leaves the consumer group;
the next start continues from the positions stored in PostgreSQL.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click
from confluent_kafka import Producer
from sqlalchemy import create_engine

from projections.runner import ProjectionRunner
from projections.salesforce.writer import ApiBudget, BudgetSettings, CollectionsWriter
from projections.salesforce_sink import SalesforceSink, run_sink
from schema_registry.codec import Codec
from sfe.metrics import MetricsServer
from sfe.settings import Settings
from streams.salesforce.rest import auth_config, connect


def budget_settings(settings: Settings) -> BudgetSettings:
    """The sink's API budget policy from ``SFE_SINK_*``."""
    return BudgetSettings(
        reserve=settings.sink_api_reserve,
        slowdown_window=settings.sink_slowdown_window,
        max_delay_s=settings.sink_max_delay_seconds,
        probe_interval_s=settings.sink_budget_probe_seconds,
    )


def result_producer(settings: Settings) -> Producer:
    """An idempotent producer for results and dead letters."""
    return Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 20}
    )


@click.group("sink")
def sink() -> None:
    """Sinks that apply commands to the outside world."""


@sink.command("salesforce")
@click.pass_context
def salesforce(ctx: click.Context) -> None:
    """Apply Salesforce field updates and creates from commands.salesforce, frugally."""
    from sfe.cli import settings_from

    settings = settings_from(ctx)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    engine = create_engine(settings.sqlalchemy_url(), pool_pre_ping=True)
    budget = ApiBudget(budget_settings(settings), stop)
    writer = CollectionsWriter(connect(auth_config(settings)), budget)
    codec = Codec.from_settings(settings, topic_prefix=settings.topic_prefix)
    projection = SalesforceSink(
        settings.sink_name, codec, writer, create_key_field=settings.sink_create_key_field
    )
    runner = ProjectionRunner(
        settings.kafka_bootstrap, engine, projection, batch_size=settings.sink_batch_size
    )
    server = MetricsServer(settings.metrics_bind, settings.metrics_port).start()
    click.echo(
        f"sink {settings.sink_name}: {projection.topics[0]} -> Salesforce; "
        f"metrics at {server.url}/metrics",
        err=True,
    )
    try:
        run_sink(runner, projection, engine, result_producer(settings), stop)
    finally:
        runner.close()
        server.stop()
        engine.dispose()
    click.echo(f"sink {settings.sink_name} stopped", err=True)
