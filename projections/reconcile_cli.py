"""`sfe reconcile`: compare an object's AI fields in Salesforce with the log, and correct them.

Dry run by default: the differences are printed, nothing is written. ``--apply``
appends one correction per differing record to ``commands.salesforce`` (in Kafka
transactions) for ``sfe sink salesforce`` to apply. See :mod:`projections.reconcile`
and docs/reconcile.md.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import click

from projections.reconcile import (
    OBJECTS,
    LogReader,
    ReconcileInterrupted,
    Report,
    append_corrections,
    reconcile,
)
from projections.replay import Progress
from schema_registry.codec import Codec
from sfe import audit
from sfe.metrics import MetricsServer
from sfe.settings import Settings
from streams.ingest.appender import TransactionalAppender
from streams.ingest.reader import UnsafeQueryValue
from streams.salesforce.rest import auth_config, connect

#: The appender needs a checkpoint topic; reconcile appends no checkpoints to it.
_CHECKPOINT_TOPIC = "sfe.ingest.checkpoints"


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def print_report(report: Report, apply: bool) -> None:
    """The differences, one line per field, then a summary line."""
    for difference in report.differences:
        for name, (expected, actual) in difference.fields.items():
            click.echo(
                f"DIFF {report.sobject} {difference.record_id} {name}: "
                f"salesforce={_shown(actual)} expected={_shown(expected)} "
                f"(command {difference.command_id})"
            )
    for record_id in report.missing:
        click.echo(f"MISSING {report.sobject} {record_id}: not in Salesforce (deleted?)")
    for record_id in report.invalid_ids:
        click.echo(
            f"INVALID {report.sobject} {_shown(record_id)}: not a Salesforce id; "
            "skipped (never queried nor corrected)"
        )
    window = f" since {report.since.isoformat()}" if report.since else ""
    click.echo(
        f"{report.sobject}{window}: {report.commands:,} commands ({report.rejected:,} rejected), "
        f"{report.in_scope:,} records in scope, {report.compared:,} compared, "
        f"{len(report.differences):,} differ ({report.differing_fields:,} fields), "
        f"{len(report.missing):,} missing, {report.pending:,} pending"
    )
    if report.undecodable:
        click.echo(f"{report.undecodable:,} undecodable records skipped (see dlq.salesforce)")
    if apply:
        click.echo(
            f"{len(report.corrections):,} corrections appended to commands.salesforce "
            f"(run {report.key})"
        )
    elif report.differences:
        click.echo("dry run: nothing written (--apply appends the corrections)")


def phase_progress(sobject: str, phase: str) -> Callable[[int, int], None]:
    """Rate and ETA on stderr, and ``sfe_replay_progress_ratio{task}``, for one phase."""
    return Progress(f"reconcile-{sobject}-{phase}", lambda line: click.echo(line, err=True))


@click.command("reconcile")
@click.option(
    "--object",
    "sobject",
    required=True,
    type=click.Choice(OBJECTS),
    help="The object whose AI fields to compare.",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    help="Only records whose last command is at or after this time (ISO 8601, UTC if no offset).",
)
@click.option(
    "--apply",
    is_flag=True,
    help="Append corrections to commands.salesforce (default: only print the differences).",
)
@click.option("--transactional-id", default="sfe-reconcile", show_default=True)
@click.pass_context
def reconcile_command(
    ctx: click.Context,
    sobject: str,
    since: datetime | None,
    apply: bool,
    transactional_id: str,
) -> None:
    """Compare an object's AI fields in Salesforce with the log; --apply corrects them."""
    from sfe.cli import privacy_from_ctx, settings_from

    settings = settings_from(ctx)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    server = MetricsServer.for_job(settings.metrics_bind, settings.metrics_port)
    click.echo(f"progress metrics at {server.url}/metrics", err=True)
    ctx.call_on_close(server.stop)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
    prefix = settings.topic_prefix
    codec = Codec.from_settings(settings, topic_prefix=prefix)

    reader = LogReader(settings.kafka_bootstrap, codec)
    try:
        report = reconcile(
            reader,
            connect(auth_config(settings)),
            sobject,
            since,
            read_progress=phase_progress(sobject, "log"),
            compare_progress=phase_progress(sobject, "salesforce"),
            stop=stop,
            privacy=privacy_from_ctx(ctx, settings),
        )
    except ReconcileInterrupted as exc:
        raise click.ClickException(f"{exc}; nothing was written") from None
    except UnsafeQueryValue as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        reader.close()
    if apply and report.corrections:
        appender = TransactionalAppender(
            settings.kafka_bootstrap,
            f"{transactional_id}-{sobject}",
            prefix + _CHECKPOINT_TOPIC,
            codec,
        )
        append_corrections(appender, codec, report.corrections)
        record_apply(settings, report)
    print_report(report, apply)


def record_apply(settings: Settings, report: Report) -> None:
    """Append the applied corrections to the audit trail (:mod:`sfe.audit`)."""
    ids = sorted(command.id for command in report.corrections)
    audit.record_action(
        settings.sqlalchemy_url(),
        "reconcile.apply",
        report.sobject,
        {
            "run": report.key,
            "since": report.since.isoformat() if report.since else None,
            "corrections": len(ids),
            "differing_fields": report.differing_fields,
            "correction_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        },
    )
