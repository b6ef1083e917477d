"""`sfe privacy erase | status | rewrap`: crypto-shred a data subject, check one, rotate keys.

``erase --subject <record id | e-mail>`` destroys the subject's key (every subject
indexed under the address, for an e-mail), appends the erasure to the audit trail in
the same database transaction, then records a :class:`SubjectErased` event on
``privacy.erasures``. From then on the subject's personal values read as erased in
every topic and table, replays included. Running processes drop the key from their
cache within ``SFE_PRIVACY_KEY_CACHE_SECONDS``. Erasing again is harmless.

``rewrap`` wraps every subject key still held by the secondary master key
(``SFE_PRIVACY_MASTER_KEY_SECONDARY``) with the current wrapper, and audits it: the step
of a master-key rotation after which the old key can be retired (docs/privacy.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import click
from confluent_kafka import KafkaException, Producer
from sqlalchemy import Connection, create_engine

from schema_registry.codec import Codec
from schema_registry.events import SubjectErased
from sfe import audit
from sfe.kafka_security import client_config
from sfe.privacy.keystore import (
    KeyStoreError,
    KeyStoreUnavailable,
    PostgresKeyStore,
    email_digest,
    index_key,
)
from sfe.privacy.policy import is_record_id
from sfe.privacy.setup import key_store
from sfe.settings import Settings, SettingsError

TOPIC = "privacy.erasures"
AUDIT_ACTION = "privacy.erase"
REWRAP_ACTION = "privacy.rewrap"
SOURCE = "sfe.privacy"
_SUBJECT_HELP = "a record id (00Q..., 003...) or an e-mail address"


def _settings(ctx: click.Context) -> Settings:
    from sfe.cli import settings_from  # sfe.cli imports this module to register the group

    return settings_from(ctx)


def _store(ctx: click.Context, settings: Settings) -> PostgresKeyStore:
    from sfe.cli import EXIT_USAGE

    try:
        return key_store(settings, create_engine(settings.sqlalchemy_url()))
    except SettingsError as exc:
        click.echo(f"sfe: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    raise AssertionError("unreachable: ctx.exit raises")


def _resolve(store: PostgresKeyStore, subject: str) -> tuple[list[str], str]:
    """The record ids ``subject`` names and how it named them (record_id or email)."""
    subject = subject.strip()
    if is_record_id(subject):
        return [subject], "record_id"
    if "@" in subject:
        return store.subjects_with_email(email_digest(index_key(store), subject)), "email"
    raise click.BadParameter(
        f"not {_SUBJECT_HELP}; e.g. sfe privacy erase --subject 00Q8d000000001AAA",
        param_hint="--subject",
    )


@click.group("privacy")
def privacy_group() -> None:
    """Personal data at rest: erase a data subject (crypto-shredding), check one."""


@privacy_group.command("erase")
@click.option("--subject", "subject", required=True, help=f"Who to erase: {_SUBJECT_HELP}.")
@click.option(
    "--reason",
    default="erasure request",
    show_default=True,
    help="Why (a ticket reference; no personal data): recorded in the audit trail and event.",
)
@click.pass_context
def erase_command(ctx: click.Context, subject: str, reason: str) -> None:
    """Destroy a subject's key: its personal values become unreadable everywhere."""
    settings = _settings(ctx)
    store = _store(ctx, settings)
    try:
        subjects, matched_by = _resolve(store, subject)
        if not subjects:
            click.echo("no subject is indexed under that address: nothing erased", err=True)
            ctx.exit(1)
        erasure_id = str(uuid.uuid4())
        actor = audit.default_actor()

        def record(connection: Connection, erased: list[str]) -> None:
            details = {
                "subjects": subjects,
                "keys_destroyed": erased,
                "matched_by": matched_by,
                "reason": reason,
            }
            audit.record(connection, AUDIT_ACTION, erasure_id, details, actor=actor)

        erased = store.erase(subjects, erasure_id, within=record)
    finally:
        store.engine.dispose()
    event = SubjectErased(
        id=erasure_id,
        source=SOURCE,
        subject=erasure_id,
        time=datetime.now(UTC),
        subjects=tuple(subjects),
        matched_by=matched_by,
        reason=reason,
        requested_by=actor,
    )
    try:
        _append(settings, event)
    except KafkaException as exc:
        raise click.ClickException(
            f"the keys are destroyed and audited (erasure {erasure_id}), but the event "
            f"could not be appended to {TOPIC}: {exc}; run the same command again to record it"
        ) from None
    already = sorted(set(subjects) - set(erased))
    click.echo(f"erasure {erasure_id}: {len(subjects)} subject(s) erased")
    for name in subjects:
        note = " (had no key left)" if name in already else ""
        click.echo(f"  {name}{note}")


@privacy_group.command("status")
@click.option("--subject", "subject", required=True, help=f"Who: {_SUBJECT_HELP}.")
@click.pass_context
def status_command(ctx: click.Context, subject: str) -> None:
    """Print each subject's state: key held, erased, or unknown."""
    settings = _settings(ctx)
    store = _store(ctx, settings)
    try:
        subjects, _ = _resolve(store, subject)
        keys = store.keys(subjects, create=False)
    finally:
        store.engine.dispose()
    if not subjects:
        click.echo("no subject is indexed under that address")
        return
    for name in subjects:
        state = "unknown" if name not in keys else "erased" if keys[name] is None else "key held"
        click.echo(f"{name} {state}")


@privacy_group.command("rewrap")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Keys per transaction.",
)
@click.pass_context
def rewrap_command(ctx: click.Context, batch_size: int) -> None:
    """Wrap every subject key with the current master key (the end of a rotation)."""
    from sfe.cli import EXIT_USAGE

    settings = _settings(ctx)
    store = _store(ctx, settings)
    try:
        try:
            moved = store.rewrap(batch_size)
        except KeyStoreUnavailable as exc:
            raise click.ClickException(f"the key wrapper cannot be reached: {exc}") from None
        except KeyStoreError as exc:
            click.echo(f"sfe privacy rewrap: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        left = {name: n for name, n in store.wrapped_by().items() if name != store.wrapper.name}
        with store.engine.begin() as connection:
            audit.record(
                connection,
                REWRAP_ACTION,
                store.namespace or "(no prefix)",
                {"rewrapped": dict(moved), "now_wrapped_by": store.wrapper.name},
            )
    finally:
        store.engine.dispose()
    total = sum(moved.values())
    click.echo(f"{total} key(s) rewrapped with {store.wrapper.name}")
    for name, count in sorted(moved.items()):
        click.echo(f"  {count} from {name}")
    if left:  # made by a process still wrapping with the old key while this ran
        still = ", ".join(f"{n} by {name}" for name, n in sorted(left.items()))
        raise click.ClickException(
            f"keys still wrapped by another key: {still}; give every process the new "
            "SFE_PRIVACY_MASTER_KEY, then run sfe privacy rewrap again"
        )


def _append(settings: Settings, event: SubjectErased) -> None:
    topic = settings.topic_prefix + TOPIC
    codec = Codec.from_settings(settings, topic_prefix=settings.topic_prefix)
    encoded = codec.encode(topic, event)
    producer = Producer({**client_config(settings.kafka_bootstrap), "enable.idempotence": True})
    failures: list[str] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    producer.produce(
        topic,
        key=event.subject.encode(),
        value=encoded.value,
        headers=list(encoded.headers),
        on_delivery=delivered,
    )
    left = producer.flush(30)
    if left or failures:
        raise KafkaException(failures[0] if failures else "not delivered within 30 s")
