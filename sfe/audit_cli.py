"""`sfe audit verify / head / prune / list`: check, anchor and read the audit trail.

``verify`` exits 0 when the chain from the anchor to the head is intact and 1 with
the first broken ``seq`` and the reason otherwise. ``head`` prints the last ``seq``
and hash, to be exported somewhere the database's owners cannot rewrite. ``prune``
removes entries older than ``SFE_AUDIT_RETENTION_DAYS`` (an audited action). See
docs/audit.md and :mod:`sfe.audit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import click
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from sfe import audit
from sfe.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    from sfe.cli import settings_from  # sfe.cli imports this module to register the group

    return settings_from(ctx)


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    engine = create_engine(settings.sqlalchemy_url())
    try:
        yield engine
    finally:
        engine.dispose()


def record_admin_action(
    ctx: click.Context, settings: Settings, action: str, subject: str, details: dict[str, Any]
) -> None:
    """Audit an admin action that took effect; exit 1 saying so when it cannot be recorded."""
    try:
        audit.record_action(settings.sqlalchemy_url(), action, subject, details)
    except SQLAlchemyError as exc:
        click.echo(
            f"sfe: {action} took effect but could not be added to the audit trail: {exc}",
            err=True,
        )
        ctx.exit(1)


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail of Salesforce writes, replays and admin actions."""


@audit_group.command("verify")
@click.option("--chunk-size", default=5000, show_default=True, help="Entries per fetch.")
@click.pass_context
def verify_command(ctx: click.Context, chunk_size: int) -> None:
    """Walk the hash chain; exit 1 with the first broken entry and why."""
    settings = _settings(ctx)
    with _engine(settings) as engine, engine.connect() as connection:
        report = audit.verify(connection, chunk_size=chunk_size)
    if report.ok:
        click.echo(report.line())
        return
    click.echo(report.line(), err=True)
    ctx.exit(1)


@audit_group.command("head")
@click.pass_context
def head_command(ctx: click.Context) -> None:
    """Print the last seq and its hash (export it regularly, outside the database)."""
    settings = _settings(ctx)
    with _engine(settings) as engine, engine.connect() as connection:
        last = audit.head(connection)
    if last is None:
        click.echo("audit_head has no row (run: sfe audit verify)", err=True)
        ctx.exit(1)
        return
    click.echo(f"{last[0]} {last[1]}")


@audit_group.command("prune")
@click.pass_context
def prune_command(ctx: click.Context) -> None:
    """Delete entries older than SFE_AUDIT_RETENTION_DAYS, keeping the chain verifiable."""
    settings = _settings(ctx)
    retention = timedelta(days=settings.audit_retention_days)
    actor = audit.default_actor() + " (sfe audit prune)"
    with _engine(settings) as engine, engine.begin() as connection:
        report = audit.prune(connection, retention, actor=actor)
    click.echo(
        f"pruned {report.deleted} entries older than {settings.audit_retention_days} days; "
        f"chain starts after seq {report.anchor_seq}; recorded as seq {report.entry.seq}"
    )


@audit_group.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--action", default=None, help="An action, or a prefix ending in * (admin.*).")
@click.pass_context
def list_command(ctx: click.Context, limit: int, action: str | None) -> None:
    """Print the newest entries, newest first: seq, time, action, subject, actor, details."""
    settings = _settings(ctx)
    with _engine(settings) as engine, engine.connect() as connection:
        for entry in audit.entries(connection, limit=limit, action=action):
            click.echo(
                f"{entry.seq}  {audit.canonical_time(entry.at)}  {entry.action}  "
                f"{entry.subject}  {entry.actor}  {audit.canonical_json(entry.details)}"
            )
