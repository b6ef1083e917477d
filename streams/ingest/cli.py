"""`sfe ingest`: run the streaming ingestor until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import click
from aiosfstream_ng import ReplayOption

from schema_registry.codec import Codec
from sfe.kafka_security import kafka_client_config
from sfe.metrics import MetricsServer
from sfe.privacy.service import Privacy
from sfe.secrets import SecretUnavailable
from sfe.settings import Settings
from streams.ingest.appender import TransactionalAppender
from streams.ingest.backfill import run_backfill
from streams.ingest.changes import EchoPolicy
from streams.ingest.ingestor import Ingestor, IngestSettings
from streams.ingest.reader import SalesforceRecordReader, UnsafeQueryValue
from streams.ingest.service import (
    DEFAULT_CHANNELS,
    ExpiredReplayPolicy,
    IngestService,
    StreamSettings,
)
from streams.salesforce.rest import auth_config, connect

CHECKPOINT_TOPIC = "sfe.ingest.checkpoints"


def build_ingestor(
    settings: Settings,
    transactional_id: str,
    reader: SalesforceRecordReader | None,
    privacy: Privacy | None = None,
) -> Ingestor:
    """An ingestor wired from settings: codec, transactional appender, echo policy, topic prefix.

    ``privacy`` seals personal values before they are appended (see sfe.privacy).
    """
    prefix = settings.topic_prefix
    codec = Codec.from_settings(settings, topic_prefix=prefix)
    appender = TransactionalAppender(
        settings.kafka_bootstrap,
        transactional_id,
        prefix + CHECKPOINT_TOPIC,
        codec,
        client_config=kafka_client_config(settings),
    )
    return Ingestor(
        appender,
        codec,
        EchoPolicy(settings.sf_call_options_client, settings.sf_integration_user_id),
        reader,
        IngestSettings(topic_prefix=prefix),
        privacy,
    )


@click.command("ingest")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    default=DEFAULT_CHANNELS,
    show_default=True,
    help="A CDC or Platform Event channel; repeat for several.",
)
@click.option(
    "--start-at",
    type=click.Choice(["new", "all"]),
    default="new",
    show_default=True,
    help="Where a channel with no checkpoint starts: new events (-1) or all retained (-2).",
)
@click.option(
    "--on-expired-replay",
    type=click.Choice([policy.value for policy in ExpiredReplayPolicy]),
    default=ExpiredReplayPolicy.REPLAY_ALL_AND_RECONCILE.value,
    show_default=True,
    help="What to do when a stored replay id is older than the org's retention.",
)
@click.option(
    "--transactional-id",
    default="sfe-ingest",
    show_default=True,
    help="Kafka transactional id; one ingestor per id (a restart fences its predecessor).",
)
@click.pass_context
def ingest(
    ctx: click.Context,
    channels: tuple[str, ...],
    start_at: str,
    on_expired_replay: str,
    transactional_id: str,
) -> None:
    """Stream Salesforce CDC and Platform Events into Kafka, exactly once."""
    from sfe.cli import privacy_from_ctx, settings_from

    settings = settings_from(ctx)
    privacy = privacy_from_ctx(ctx, settings)
    auth = auth_config(settings)
    rest = connect(auth)
    ingestor = build_ingestor(settings, transactional_id, SalesforceRecordReader(rest), privacy)
    stream = StreamSettings(
        channels=channels,
        start_at=ReplayOption.ALL_EVENTS if start_at == "all" else ReplayOption.NEW_EVENTS,
        expired_policy=ExpiredReplayPolicy(on_expired_replay),
    )
    service = IngestService(ingestor, auth, stream, tokens=rest.tokens)  # one login for both
    server = MetricsServer(settings.metrics_bind, settings.metrics_port).start()
    click.echo(f"ingesting {', '.join(channels)}; metrics at {server.url}/metrics", err=True)
    try:
        asyncio.run(_run_until_signalled(service))
    finally:
        server.stop()


async def _run_until_signalled(service: IngestService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await service.run(stop)


@click.command("backfill")
@click.option("--object", "entity", required=True, help="The sObject to load, e.g. Lead.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    help="Only records modified at or after this time (ISO 8601, UTC if no offset).",
)
@click.option("--transactional-id", default="sfe-backfill", show_default=True)
@click.pass_context
def backfill(
    ctx: click.Context, entity: str, since: datetime | None, transactional_id: str
) -> None:
    """Load an object's records into sf.cdc.<Object> as snapshots (Bulk API 2.0)."""
    from sfe.cli import privacy_from_ctx, settings_from

    settings = settings_from(ctx)
    privacy = privacy_from_ctx(ctx, settings)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    prefix = settings.topic_prefix
    codec = Codec.from_settings(settings, topic_prefix=prefix)
    appender = TransactionalAppender(
        settings.kafka_bootstrap,
        f"{transactional_id}-{entity}",
        prefix + CHECKPOINT_TOPIC,
        codec,
        client_config=kafka_client_config(settings),
    )
    try:
        written = run_backfill(
            connect(auth_config(settings)),
            appender,
            codec,
            entity,
            since,
            topic_prefix=prefix,
            progress=lambda count: click.echo(f"\r{entity}: {count} records", nl=False, err=True),
            privacy=privacy,
        )
    except UnsafeQueryValue as exc:
        raise click.BadParameter(str(exc), param_hint="--object") from None
    click.echo(f"\n{entity}: {written} snapshot events appended to sf.cdc.{entity}")


@click.command("ingress")
@click.option("--transactional-id", default="sfe-ingress", show_default=True)
@click.pass_context
def ingress(ctx: click.Context, transactional_id: str) -> None:
    """Serve the HTTP ingress: Salesforce Outbound Messages and the signed JSON webhook."""
    from aiohttp import web

    from sfe.cli import privacy_from_ctx, settings_from
    from streams.ingest.ingress import Ingress

    settings = settings_from(ctx)
    privacy = privacy_from_ctx(ctx, settings)
    if not settings.sf_organization_id:
        raise click.UsageError(
            "set SFE_SF_ORGANIZATION_ID to the org whose deliveries are accepted"
        )
    secrets = settings.ingress_secrets()
    try:
        configured = bool(secrets.values())
    except SecretUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    if not configured:
        raise click.UsageError(
            "set SFE_INGRESS_SECRET (or SFE_INGRESS_SECRET_FILE) to the shared secret "
            "of the ingress"
        )
    ingestor = build_ingestor(settings, transactional_id, reader=None, privacy=privacy)
    ingestor.start()
    application = Ingress(ingestor, settings.sf_organization_id, secrets).app()
    server = MetricsServer(settings.metrics_bind, settings.metrics_port).start()
    try:
        web.run_app(application, host=settings.ingress_bind, port=settings.ingress_port, print=None)
    finally:
        server.stop()
