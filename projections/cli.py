"""`sfe projection run|hash` and `sfe replay --projection postgres`: the PostgreSQL read models.

``sfe projection run`` keeps the tables current until SIGTERM or Ctrl-C (the batch in
hand commits, then the consumer leaves its group; the next start resumes from the
positions stored with the rows). ``sfe replay --projection postgres`` rebuilds the
tables from the log beside the live ones and swaps them in, printing the content
hash that ``sfe projection hash`` prints for the live tables.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

import click
from confluent_kafka import Producer
from sqlalchemy import Engine, create_engine

from projections.postgres import NAME, PostgresProjection
from projections.replay import (
    STAGING_SUFFIX,
    Progress,
    Rebuild,
    ReplayInterrupted,
    snapshot_hash,
)
from projections.runner import ProjectionRunner
from schema_registry.codec import Codec
from sfe.metrics import MetricsServer
from sfe.settings import Settings

EXIT_INTERRUPTED = 130

_name_option = click.option(
    "--name",
    default=NAME,
    show_default=True,
    help="Name under which the projection stores its positions.",
)


def _settings(ctx: click.Context) -> Settings:
    from sfe.cli import settings_from  # sfe.cli imports this module to register the commands

    return settings_from(ctx)


@contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _parts(settings: Settings, name: str, suffix: str = "") -> tuple[Engine, PostgresProjection]:
    engine = create_engine(settings.sqlalchemy_url(), pool_pre_ping=True)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True})
    codec = Codec.from_settings(settings, topic_prefix=settings.topic_prefix)
    return engine, PostgresProjection(codec, producer, name=name, table_suffix=suffix)


@click.group("projection")
def projection() -> None:
    """The PostgreSQL projection: sync_log, ml_predictions, workflow_executions."""


@projection.command("run")
@_name_option
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1))
@click.pass_context
def run(ctx: click.Context, name: str, batch_size: int) -> None:
    """Project command results, predictions and workflow events until SIGTERM or Ctrl-C."""
    settings = _settings(ctx)
    engine, postgres = _parts(settings, name)
    runner = ProjectionRunner(settings.kafka_bootstrap, engine, postgres, batch_size=batch_size)
    server = MetricsServer(settings.metrics_bind, settings.metrics_port).start()
    click.echo(
        f"projection {name}: {', '.join(postgres.topics)} -> PostgreSQL; "
        f"metrics at {server.url}/metrics",
        err=True,
    )
    try:
        with _stop_on_signal() as stop:
            runner.run(stop)
    finally:
        runner.close()
        server.stop()
        engine.dispose()
    click.echo(f"projection {name}: stopped", err=True)


@projection.command("hash")
@click.pass_context
def hash_command(ctx: click.Context) -> None:
    """Print the content hash of the live tables (compare with `sfe replay`'s)."""
    settings = _settings(ctx)
    engine = create_engine(settings.sqlalchemy_url())
    try:
        digest, rows = snapshot_hash(engine)
    finally:
        engine.dispose()
    click.echo(_summary(digest, rows))


def _summary(digest: str, rows: dict[str, int]) -> str:
    counts = ", ".join(f"{table}={count}" for table, count in rows.items())
    return f"{digest}  ({counts})"


def _start(value: str) -> datetime | None:
    if value == "earliest":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected 'earliest' or an ISO time, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("replay")
@click.option(
    "--projection",
    "target",
    type=click.Choice(["postgres"]),
    required=True,
    help="The projection to rebuild.",
)
@click.option(
    "--from",
    "start",
    default="earliest",
    show_default=True,
    help="'earliest', or an ISO time: rebuild from the records written since then.",
)
@_name_option
@click.option("--batch-size", default=20_000, show_default=True, type=click.IntRange(1))
@click.pass_context
def replay(ctx: click.Context, target: str, start: str, name: str, batch_size: int) -> None:
    """Rebuild a projection from the log beside the live one, swap it in, print its hash."""
    settings = _settings(ctx)
    since = _start(start)
    engine, postgres = _parts(settings, name, STAGING_SUFFIX)
    progress = Progress(f"replay-{name}", lambda line: click.echo(line, err=True))
    rebuild = Rebuild(
        engine, settings.kafka_bootstrap, postgres, since, batch_size, progress=progress
    )
    try:
        with _stop_on_signal() as stop:
            result = rebuild.run(stop)
    except ReplayInterrupted as exc:
        click.echo(f"replay {target}: interrupted ({exc}); live tables unchanged", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        engine.dispose()
    click.echo(f"replay {target}: {result.consumed:,} records, tables swapped in", err=True)
    click.echo(_summary(result.digest, result.rows))
