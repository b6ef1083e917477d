"""`sfe projection run|hash` and `sfe replay`: rebuild the read models, or rescore history.

``sfe projection run`` keeps the tables current until SIGTERM or Ctrl-C (the batch in
hand commits, then the consumer leaves its group; the next start resumes from the
positions stored with the rows). ``sfe replay --projection postgres`` rebuilds the
tables from the log beside the live ones and swaps them in, printing the content
hash that ``sfe projection hash`` prints for the live tables. ``sfe replay --rescore
--model lead:2`` re-decides history with another model version into a separate topic
namespace and prints how the outcomes would change (:mod:`projections.rescore`).
"""

from __future__ import annotations

import json
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
    RebuildConflict,
    RebuildPending,
    ReplayInterrupted,
    snapshot_hash,
)
from projections.runner import ProjectionRunner
from schema_registry.codec import Codec, registry_config
from sfe.kafka_security import client_config
from sfe.metrics import MetricsServer
from sfe.settings import Settings

EXIT_INTERRUPTED = 130
EXIT_USAGE = 2

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
    producer = Producer({**client_config(settings.kafka_bootstrap), "enable.idempotence": True})
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
    default=None,
    help="The projection to rebuild (exclusive with --rescore).",
)
@click.option(
    "--rescore",
    is_flag=True,
    help="Re-decide history with --model into a separate topic namespace and compare.",
)
@click.option(
    "--model",
    "model_ref",
    default=None,
    metavar="NAME:VERSION",
    help="With --rescore: the model version to decide with (lead:2, win:3).",
)
@click.option(
    "--from",
    "start",
    default="earliest",
    show_default=True,
    help="'earliest', or an ISO time: rebuild (or rescore) from the records written since then.",
)
@_name_option
@click.option("--batch-size", default=20_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--top", default=10, show_default=True, type=click.IntRange(0), help="With --rescore: movers."
)
@click.option("--json", "as_json", is_flag=True, help="With --rescore: print the report as JSON.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the interrupted run instead of starting one (its own --from applies).",
)
@click.option(
    "--run",
    "run_id",
    default=None,
    metavar="RUN_ID",
    help="With --rescore --resume: which interrupted run (when there are several).",
)
@click.option(
    "--readers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 32),
    help="With --projection: processes that consume and decode in parallel.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="With --projection: discard an interrupted rebuild and start afresh.",
)
@click.option(
    "--keep/--no-keep",
    default=True,
    show_default=True,
    help="With --rescore: keep the namespace topics after the report.",
)
@click.option(
    "--drop",
    "drop_namespace",
    default=None,
    metavar="NAMESPACE",
    help="With --rescore: delete the topics of an earlier run's namespace and exit.",
)
@click.pass_context
def replay(
    ctx: click.Context,
    target: str | None,
    rescore: bool,
    model_ref: str | None,
    start: str,
    name: str,
    batch_size: int,
    top: int,
    as_json: bool,
    resume: bool,
    run_id: str | None,
    readers: int,
    restart: bool,
    keep: bool,
    drop_namespace: str | None,
) -> None:
    """Rebuild a projection (--projection postgres) or rescore history (--rescore --model lead:2).

    Both can be interrupted (Ctrl-C, SIGTERM, a crash) and continued with --resume.
    """
    rescore_only = ("model_ref", "top", "as_json", "keep", "drop_namespace", "run_id")
    if target is not None and rescore:
        _usage(
            ctx,
            "--rescore and --projection are exclusive: run either\n"
            "  sfe replay --projection postgres\n"
            "  sfe replay --rescore --model lead:2",
        )
    if target is None and not rescore:
        _usage(
            ctx,
            "say what to replay:\n"
            "  sfe replay --projection postgres      (rebuild the read models)\n"
            "  sfe replay --rescore --model lead:2   (re-decide history with another model)",
        )
    settings = _settings(ctx)
    server = MetricsServer.for_job(settings.metrics_bind, settings.metrics_port)
    click.echo(f"progress metrics at {server.url}/metrics", err=True)
    ctx.call_on_close(server.stop)
    if target is not None:
        given = [_FLAGS[p] for p in rescore_only if _given(ctx, p)]
        if given:
            _usage(
                ctx,
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for --rescore: "
                "sfe replay --rescore --model lead:2 (or drop them to rebuild the projection)",
            )
        if resume and restart:
            _usage(
                ctx, "--resume continues the interrupted rebuild, --restart discards it: pick one"
            )
        if resume and _given(ctx, "start"):
            _usage(
                ctx,
                "--resume continues from where the interrupted rebuild stopped, with its own "
                "--from: sfe replay --projection postgres --resume",
            )
        _rebuild(ctx, target, start, name, batch_size, resume, restart, readers)
        return
    if restart or _given(ctx, "readers"):
        flag = "--restart" if restart else "--readers"
        _usage(ctx, f"{flag} is for --projection: sfe replay --projection postgres {flag} ...")
    if _given(ctx, "name"):
        _usage(ctx, "--name is the projection's: sfe replay --projection postgres --name NAME")
    if run_id is not None and not resume:
        _usage(ctx, f"--run names the run to resume: sfe replay --rescore --resume --run {run_id}")
    _rescore(ctx, model_ref, start, batch_size, top, as_json, keep, drop_namespace, resume, run_id)


_FLAGS = {
    "model_ref": "--model",
    "top": "--top",
    "as_json": "--json",
    "keep": "--keep/--no-keep",
    "drop_namespace": "--drop",
    "run_id": "--run",
}


def _given(ctx: click.Context, parameter: str) -> bool:
    return ctx.get_parameter_source(parameter) is click.core.ParameterSource.COMMANDLINE


def _usage(ctx: click.Context, message: str) -> None:
    click.echo(f"sfe replay: {message}", err=True)
    ctx.exit(EXIT_USAGE)


def _rebuild(
    ctx: click.Context,
    target: str,
    start: str,
    name: str,
    batch_size: int,
    resume: bool,
    restart: bool,
    readers: int,
) -> None:
    """``sfe replay --projection postgres [--resume | --restart]``."""
    settings = _settings(ctx)
    since = _start(start)
    engine, postgres = _parts(settings, name, STAGING_SUFFIX)
    progress = Progress(f"replay-{name}", lambda line: click.echo(line, err=True))
    rebuild = Rebuild(
        engine,
        settings.kafka_bootstrap,
        postgres,
        since,
        batch_size,
        progress=progress,
        resume=resume,
        discard=restart,
        readers=readers,
        schema_registry=registry_config(settings),
    )
    again = "sfe replay --projection postgres" + ("" if name == NAME else f" --name {name}")
    try:
        with _stop_on_signal() as stop:
            result = rebuild.run(stop)
    except RebuildPending as exc:
        _usage(
            ctx,
            f"{exc}: continue it with\n  {again} --resume\nor discard it and start afresh with\n"
            f"  {again} --restart",
        )
    except RebuildConflict as exc:
        _usage(ctx, str(exc))
    except ReplayInterrupted as exc:
        click.echo(
            f"replay {target}: interrupted ({exc}); live tables unchanged\n"
            f"  continue with: {again} --resume",
            err=True,
        )
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        engine.dispose()
    resumed = f" ({result.resumed:,} of them before the resume)" if result.resumed else ""
    click.echo(
        f"replay {target}: {result.consumed:,} records{resumed}, tables swapped in", err=True
    )
    click.echo(_summary(result.digest, result.rows))


def _rescore(
    ctx: click.Context,
    model_ref: str | None,
    start: str,
    batch_size: int,
    top: int,
    as_json: bool,
    keep: bool,
    drop_namespace: str | None,
    resume: bool,
    run_id: str | None,
) -> None:
    """``sfe replay --rescore --model NAME:VERSION [--resume [--run ID]]`` (or ``--drop NAMESPACE``)."""
    from ml.registry import Registry
    from projections import rescore

    settings = _settings(ctx)
    if drop_namespace is not None:
        if model_ref is not None:
            _usage(
                ctx,
                f"--drop deletes a namespace on its own: sfe replay --rescore --drop {drop_namespace}",
            )
        try:
            deleted = rescore.delete_namespace(settings.kafka_bootstrap, drop_namespace)
        except rescore.RescoreError as exc:
            _usage(ctx, str(exc))
        click.echo(f"deleted {len(deleted)} topics under {drop_namespace}", err=True)
        return
    if model_ref is None:
        _usage(
            ctx,
            "--rescore needs the model version to decide with: "
            "sfe replay --rescore --model lead:2 (versions: sfe models list)",
        )
    since = _start(start)
    try:
        model = rescore.resolve_model(Registry(settings.models_path), str(model_ref))
    except rescore.RescoreError as exc:
        _usage(ctx, str(exc))
    ref = f"{model.name}:{model.version}"
    if resume:
        runs = rescore.find_runs(settings.kafka_bootstrap, settings.topic_prefix, model)
        if run_id is None and len(runs) == 1:
            run_id = runs[0]
        elif run_id is None or run_id not in runs:
            known = ", ".join(runs) or "none"
            _usage(
                ctx,
                f"{'no' if not runs else 'which'} rescore run of {ref} to resume "
                f"(runs with a namespace: {known}): "
                + (
                    f"sfe replay --rescore --model {ref} --resume --run RUN_ID"
                    if runs
                    else f"start one with sfe replay --rescore --model {ref}"
                ),
            )
    from sfe.cli import privacy_from_ctx

    flow = rescore.build_flow(settings, model, privacy_from_ctx(ctx, settings))
    progress = Progress(
        f"rescore-{model.name}-v{model.version}", lambda line: click.echo(line, err=True)
    )
    run = rescore.Rescore(
        settings,
        model,
        flow,
        since,
        top=top,
        batch_size=batch_size,
        run_id=run_id,
        resume=resume,
        progress=progress,
    )
    verb = "resume" if resume else "into"
    click.echo(f"rescore {ref}: {verb} {run.namespace}*", err=True)
    try:
        with _stop_on_signal() as stop:
            report = run.run(stop)
    except rescore.RescoreError as exc:
        _usage(ctx, str(exc))
    if as_json:
        click.echo(json.dumps(rescore.report_json(report), indent=2))
    else:
        click.echo(rescore.render_text(report))
    if keep or report.interrupted:  # an interrupted run's namespace is what resumes it
        click.echo(
            f"namespace kept: {', '.join(report.topics)}\n"
            f"  delete it with: sfe replay --rescore --drop {report.namespace}",
            err=True,
        )
    else:
        rescore.delete_namespace(settings.kafka_bootstrap, report.namespace)
        click.echo(f"namespace {report.namespace} deleted", err=True)
    if report.interrupted:
        click.echo(
            "rescore: interrupted; the report above is partial\n"
            f"  continue with: sfe replay --rescore --model {ref} --resume --run {report.run_id}",
            err=True,
        )
        ctx.exit(EXIT_INTERRUPTED)
