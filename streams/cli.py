"""The ``sfe topics`` command group: list the catalogue, ensure it on the broker, write its docs."""

from __future__ import annotations

from pathlib import Path

import click

from sfe.audit_cli import record_admin_action
from sfe.settings import Settings
from streams import topic_docs
from streams.topic_admin import TopicAdmin, TopicAdminError, TopicState
from streams.topics import catalogue

EXIT_DRIFT = 1

_prefix_option = click.option(
    "--prefix",
    default=None,
    help="Prefix of every topic name (an isolated environment on a shared cluster); "
    "default: SFE_TOPIC_PREFIX.",
)


def _settings(ctx: click.Context) -> Settings:
    from sfe.cli import settings_from  # sfe.cli imports this module to register the group

    return settings_from(ctx)


@click.group()
def topics() -> None:
    """The Kafka topics of the pipeline: catalogue, creation and drift, documentation."""


@topics.command("list")
@_prefix_option
@click.pass_context
def list_topics(ctx: click.Context, prefix: str | None) -> None:
    """Print every topic: partitions, retention, key and value schema subject."""
    chosen = _settings(ctx).topic_prefix if prefix is None else prefix
    for topic in catalogue(chosen):
        click.echo(
            f"{topic.name:<32} {topic.partitions:>3}  {topic.retention:<34} "
            f"{topic.value_subject:<34} key: {topic.key}"
        )


@topics.command("ensure")
@_prefix_option
@click.option("--replication-factor", default=1, show_default=True, type=click.IntRange(1))
@click.option(
    "--fix",
    is_flag=True,
    help="Apply the catalogue's cleanup policy and retention where they drifted.",
)
@click.pass_context
def ensure(ctx: click.Context, prefix: str | None, replication_factor: int, fix: bool) -> None:
    """Create missing topics and check existing ones against the catalogue (idempotent).

    Exits 1 when drift remains: a different partition count or replication factor
    (never changed automatically), or settings that differ and --fix was not given.
    """
    settings = _settings(ctx)
    chosen = settings.topic_prefix if prefix is None else prefix
    try:
        reports = TopicAdmin(settings.kafka_bootstrap).ensure(
            catalogue(chosen), replication_factor=replication_factor, fix=fix
        )
    except TopicAdminError as exc:
        raise click.ClickException(str(exc)) from None
    counts: dict[TopicState, int] = dict.fromkeys(TopicState, 0)
    for report in reports:
        counts[report.state] += 1
        click.echo(f"{report.topic:<32} {report.state}")
        for drift in report.drift:
            click.echo(f"{'':<32}   {drift}")
    click.echo(", ".join(f"{count} {state}" for state, count in counts.items()))
    fixed = [r.topic for r in reports if r.state is TopicState.FIXED]
    if fixed:
        record_admin_action(
            ctx,
            settings,
            "topics.fix",
            chosen or "(no prefix)",
            {
                "topics": fixed,
                "drift": {r.topic: [str(d) for d in r.drift] for r in reports if r.topic in fixed},
            },
        )
    if counts[TopicState.DRIFT]:
        ctx.exit(EXIT_DRIFT)


@topics.command("docs")
@click.option("--write", is_flag=True, help="Write the file instead of printing it.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=topic_docs.DOCS_PATH,
    show_default=True,
)
def docs(write: bool, output: Path) -> None:
    """Generate the topic documentation (docs/topics.md) from the catalogue and schemas."""
    text = topic_docs.render(catalogue())
    if not write:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"wrote {output}")
