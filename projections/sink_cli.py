"""`sfe sink salesforce` and `sfe sink notifications`: apply commands until SIGTERM or Ctrl-C.

``salesforce`` applies ``commands.salesforce`` to the org; ``notifications`` sends
``commands.notifications`` to Slack and e-mail, and refuses to start until a
transport is configured (``SFE_NOTIFY_*``). A stop signal lets the batch in hand
finish (or abandons it, uncommitted, while it waits for budget or a retry),
publishes its results and leaves the consumer group; the next start continues from
the positions stored in PostgreSQL.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click
from confluent_kafka import Producer
from sqlalchemy import create_engine

from projections.notifications import NotificationSink, retry_policy, transports_from
from projections.notifications import run_sink as run_notification_sink
from projections.runner import ProjectionRunner
from projections.salesforce.writer import ApiBudget, BudgetSettings, CollectionsWriter
from projections.salesforce_sink import SalesforceSink, run_sink
from schema_registry.codec import Codec
from sfe.kafka_security import client_config
from sfe.metrics import MetricsServer
from sfe.settings import Settings, SettingsError
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
        {**client_config(settings.kafka_bootstrap), "enable.idempotence": True, "linger.ms": 20}
    )


def _stop_on_signals() -> threading.Event:
    """An event SIGINT and SIGTERM set: a sink finishes its batch in hand, then stops."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return stop


@click.group("sink")
def sink() -> None:
    """Sinks that apply commands to the outside world."""


@sink.command("salesforce")
@click.pass_context
def salesforce(ctx: click.Context) -> None:
    """Apply Salesforce field updates and creates from commands.salesforce, frugally."""
    from sfe.cli import privacy_from_ctx, settings_from

    settings = settings_from(ctx)
    privacy = privacy_from_ctx(ctx, settings)
    stop = _stop_on_signals()
    engine = create_engine(settings.sqlalchemy_url(), pool_pre_ping=True)
    budget = ApiBudget(budget_settings(settings), stop)
    writer = CollectionsWriter(connect(auth_config(settings)), budget)
    codec = Codec.from_settings(settings, topic_prefix=settings.topic_prefix)
    projection = SalesforceSink(
        settings.sink_name,
        codec,
        writer,
        create_key_field=settings.sink_create_key_field,
        bulk_threshold=settings.sink_bulk_threshold,
        privacy=privacy,
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


@sink.command("notifications")
@click.pass_context
def notifications(ctx: click.Context) -> None:
    """Send Slack messages and e-mails from commands.notifications, once per command id.

    Off by default: set SFE_NOTIFY_SLACK_WEBHOOK_URL and/or SFE_NOTIFY_SMTP_HOST (with
    SFE_NOTIFY_SMTP_FROM). See docs/notifications.md.
    """
    from sfe.cli import EXIT_USAGE, privacy_from_ctx, settings_from

    settings = settings_from(ctx)
    privacy = privacy_from_ctx(ctx, settings)
    try:
        transports = transports_from(settings)
    except SettingsError as exc:
        click.echo(f"sfe: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    stop = _stop_on_signals()
    engine = create_engine(settings.sqlalchemy_url(), pool_pre_ping=True)
    codec = Codec.from_settings(settings, topic_prefix=settings.topic_prefix)
    name = settings.notify_sink_name
    projection = NotificationSink(
        name, codec, transports, retry_policy(settings), stop, privacy=privacy
    )
    runner = ProjectionRunner(
        settings.kafka_bootstrap, engine, projection, batch_size=settings.notify_batch_size
    )
    server = MetricsServer(settings.metrics_bind, settings.metrics_port).start()
    channels = ", ".join(t.channel.value for t in transports)
    click.echo(
        f"sink {name}: {projection.topics[0]} -> {channels}; metrics at {server.url}/metrics",
        err=True,
    )
    try:
        run_notification_sink(runner, projection, engine, result_producer(settings), stop)
    finally:
        runner.close()
        server.stop()
        engine.dispose()
    click.echo(f"sink {name} stopped", err=True)
