"""The ``sfe`` command line: one entry point, subcommands grouped by purpose.

Settings are loaded once, when a subcommand runs (``--help`` works without them), and
a bad setting ends the process with exit code 2 and a message naming the variable.
Each package that owns a command group registers it here with ``main.add_command``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ml import cli as ml_cli
from projections import cli as projection_cli
from projections.reconcile_cli import reconcile_command
from projections.sink_cli import sink as sink_group
from sfe import __version__
from sfe import db as database
from sfe import stack as local_stack
from sfe.audit_cli import audit_group
from sfe.kafka_security import use_for_process
from sfe.logging import configure_logging
from sfe.privacy.cli import privacy_group
from sfe.privacy.service import Privacy
from sfe.privacy.setup import privacy_from
from sfe.settings import Settings, SettingsError, load_settings
from simulator.cli import sim as sim_group
from streams.cli import topics as topics_group
from streams.ingest.cli import backfill as backfill_command
from streams.ingest.cli import ingest as ingest_command
from streams.ingest.cli import ingress as ingress_command
from streams.worker import cli as worker_cli

EXIT_USAGE = 2


def settings_from(ctx: click.Context) -> Settings:
    """The settings of this invocation, loaded on first use."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        try:
            root.obj = load_settings()
        except SettingsError as exc:
            click.echo(f"sfe: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        configure_logging(root.obj.log_level)
    try:
        use_for_process(root.obj)  # every Kafka client of this command connects so
    except SettingsError as exc:
        click.echo(f"sfe: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    return root.obj


def privacy_from_ctx(ctx: click.Context, settings: Settings) -> Privacy | None:
    """The command's :class:`~sfe.privacy.service.Privacy`; a bad setting exits naming it."""
    try:
        return privacy_from(settings)
    except SettingsError as exc:
        click.echo(f"sfe: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    return None  # unreachable: ctx.exit raises


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sfe")
def main() -> None:
    """Event-sourced Salesforce intelligence pipeline.

    Salesforce changes stream into Kafka, agents score them with ONNX models, and
    projections write PostgreSQL and Salesforce. Start with `sfe stack up`.
    """


@main.group()
def stack() -> None:
    """Run the local stack: a Kafka broker (KRaft) and a PostgreSQL cluster, no Docker."""


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Start Kafka and PostgreSQL unless they already run (safe to repeat)."""
    settings = settings_from(ctx)
    try:
        results = local_stack.up(settings)
    except local_stack.StackError as exc:
        raise click.ClickException(str(exc)) from None
    for status, started in results:
        click.echo(f"{status.line()}  {'(started)' if started else '(already running)'}")


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop the services that `sfe stack up` started, by PID, and nothing else."""
    settings = settings_from(ctx)
    for name, was_running in local_stack.down(settings):
        click.echo(f"{name:<10} {'stopped' if was_running else 'was not running'}")


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """Print each service, its PID and its URL; exit 1 when any is down."""
    settings = settings_from(ctx)
    statuses = local_stack.status(settings)
    for status in statuses:
        click.echo(status.line())
    if not all(status.running for status in statuses):
        ctx.exit(1)


@main.group()
def db() -> None:
    """Manage the PostgreSQL schema of the read models (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    settings = settings_from(ctx)
    database.upgrade(settings, revision)
    click.echo(f"database at revision {database.current_revision(settings)}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str) -> None:
    """Revert migrations down to REVISION (`base` drops every projection table)."""
    settings = settings_from(ctx)
    database.downgrade(settings, revision)
    click.echo(f"database at revision {database.current_revision(settings)}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the revision the database is at."""
    settings = settings_from(ctx)
    click.echo(database.current_revision(settings) or "none (run: sfe db upgrade)")


@main.command()
@click.option(
    "--duration",
    type=click.FloatRange(10, 24 * 3600),
    default=120.0,
    show_default=True,
    help="Seconds of workload (the set-up and the drain come on top).",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.5, 1000),
    default=20.0,
    show_default=True,
    help="New leads per second in the middle third (half before, twice after).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the simulator and the pipeline running after the summary (PIDs printed).",
)
@click.option("--keep-topics", is_flag=True, help="Keep the demo's Kafka topics afterwards.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the HTML report (default: report.html in the demo's folder).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the workload.")
@click.pass_context
def demo(
    ctx: click.Context,
    duration: float,
    rate: float,
    keep_running: bool,
    keep_topics: bool,
    report: Path | None,
    seed: int,
) -> None:
    """Run the whole pipeline against a local org with a realistic workload, then sum it up.

    Starts the local stack and the org simulator, trains the models if none are
    promoted, runs ingestion, the workers, the sink and the projection, drives new
    leads, stage changes, won deals, usage and the churn batch, prints progress and
    a summary, and writes an HTML report. No configuration needed.
    """
    from sfe.demo import DemoOptions, run_demo

    settings = settings_from(ctx)
    options = DemoOptions(
        duration=duration,
        rate=rate,
        keep_running=keep_running,
        keep_topics=keep_topics,
        report=report,
        seed=seed,
    )
    result = run_demo(settings, options, echo=lambda line: click.echo(line))
    ctx.exit(result.exit_code)


# Command groups owned by other packages.
main.add_command(sim_group)
main.add_command(topics_group)
main.add_command(privacy_group)
main.add_command(ingest_command)
main.add_command(ingress_command)
main.add_command(backfill_command)
main.add_command(ml_cli.train)
main.add_command(ml_cli.models)
main.add_command(projection_cli.projection)
main.add_command(projection_cli.replay)
main.add_command(reconcile_command)
main.add_command(sink_group)
main.add_command(worker_cli.worker)
main.add_command(worker_cli.churn)
main.add_command(worker_cli.ecosystem_group)
main.add_command(audit_group)


if __name__ == "__main__":
    main()
