"""The notification sink: ``commands.notifications`` to Slack and e-mail, once per command id.

Each batch the :class:`~projections.runner.ProjectionRunner` consumes is decoded and
every :class:`NotificationRequested` whose id the sink has not handled before is sent
through the transport of its channel (:mod:`projections.notify`), retrying transient
failures. One transaction then remembers the handled command ids with their outcomes
(the Salesforce sink's ``salesforce_commands`` table, under this sink's name), stages
one ``CommandExecuted`` per command (and a dead letter per failure) in the outbox
(``salesforce_outbox``, same name) and stores the consumed positions. The outbox is
published to ``command.results`` and ``dlq.notifications`` right after the commit.

Results: ``APPLIED`` (delivered), ``ALREADY_APPLIED`` (a redelivered or replayed id:
nothing sent, id ``derived_event_id(command, sink, "result:repeat")``), ``REJECTED``
(not delivered: the receiver refused, retries ran out, or no transport or address
exists for it; the reason is in ``errors``, and the command is dead-lettered).

Towards Slack and the SMTP server delivery is at least once: a crash after a send and
before its batch commits sends that notification again on restart. The window is one
batch, and the default batch is one command; the command id travels with every
message so that receivers can recognise the repeat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from confluent_kafka import Message, Producer
from sqlalchemy import Connection, Engine

from projections.notify.slack import SlackWebhookTransport
from projections.notify.smtp import SmtpTransport, is_address, parse_aliases
from projections.notify.transport import (
    DeliveryError,
    PermanentDelivery,
    RetryPolicy,
    TransientDelivery,
    Transport,
    deliver,
)
from projections.runner import ProjectionRunner
from projections.salesforce import memory
from projections.salesforce.memory import message_headers
from projections.salesforce.writer import SinkInterrupted
from schema_registry.codec import Codec
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    NotificationRequested,
    SalesforceError,
)
from schema_registry.ids import derived_event_id
from sfe import metrics
from sfe.privacy.cipher import ERASED
from sfe.privacy.service import Privacy
from sfe.settings import Settings, SettingsError

log = logging.getLogger(__name__)

AGENT = "projections.notifications"
COMMANDS, RESULTS, DLQ = "commands.notifications", "command.results", "dlq.notifications"


def result_event(
    command: NotificationRequested,
    outcome: CommandOutcome,
    errors: Sequence[SalesforceError] = (),
    purpose: str = "result",
) -> CommandExecuted:
    """The ``CommandExecuted`` reporting ``outcome`` for ``command`` (target ``slack/#channel``)."""
    return CommandExecuted(
        id=derived_event_id(command.id, AGENT, purpose),
        source=AGENT,
        subject=command.subject,
        time=datetime.now(UTC),
        causation_id=command.id,
        correlation_id=command.correlation_id or command.id,
        command_type=command.type,
        target=f"{command.channel.value.lower()}/{command.recipient}",
        outcome=outcome,
        errors=tuple(errors),
        operation=command.channel.value,
    )


class NotificationSink:
    """A :class:`~projections.runner.Projection` whose effect is Slack messages and e-mails."""

    def __init__(
        self,
        name: str,
        codec: Codec,
        transports: Sequence[Transport],
        policy: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        *,
        privacy: Privacy | None = None,
    ) -> None:
        """Send as sink ``name``; ``privacy`` opens sealed recipients and texts just to send."""
        self.name = name
        self.privacy = privacy
        self.codec = codec
        self.transports: Mapping[str, Transport] = {t.channel.value: t for t in transports}
        self.policy = policy or RetryPolicy()
        self.stop = stop or threading.Event()
        self.prefix = codec.topic_prefix
        self.topics: Sequence[str] = [self.prefix + COMMANDS]
        self._outbox = memory.Outbox(self.name, AGENT, codec, RESULTS, DLQ)

    def project(self, connection: Connection, messages: Sequence[Message]) -> None:
        """Send ``messages``' new notifications and stage their results (runner's transaction)."""
        self._outbox = memory.Outbox(self.name, AGENT, self.codec, RESULTS, DLQ)
        sources: dict[str, Message] = {}
        commands: list[NotificationRequested] = []
        for message in messages:
            try:
                event = self.codec.decode(
                    str(message.topic()), message.value(), message_headers(message)
                )
            except UndecodableEvent as exc:
                self._outbox.dead_letter(message, exc)
                continue
            if not isinstance(event, NotificationRequested):  # the catalogue forbids it
                self._outbox.dead_letter(message, PermanentDelivery("NOT_A_COMMAND", event.type))
                continue
            commands.append(event)
            sources.setdefault(event.id, message)
        handled = memory.handled(connection, self.name, sorted({c.id for c in commands}))
        outcomes: list[dict[str, Any]] = []
        for command in commands:
            if command.id in handled:
                outcome, errors, _ = handled[command.id]
                if outcome != CommandOutcome.REJECTED:
                    outcome = CommandOutcome.ALREADY_APPLIED
                metrics.OPERATIONS.labels(component=AGENT, outcome="repeat").inc()
                self._outbox.stage(result_event(command, outcome, errors, "result:repeat"))
                continue
            error = self._send(command)
            if error is None:
                outcome, errors = CommandOutcome.APPLIED, ()
                metrics.PROCESSING_LATENCY.labels(stage="notification_sent").observe(
                    (datetime.now(UTC) - command.time).total_seconds()
                )
            else:
                outcome = CommandOutcome.REJECTED
                errors = (SalesforceError(status_code=error.code, message=error.message),)
                self._outbox.dead_letter(sources[command.id], error)
            metrics.OPERATIONS.labels(
                component=AGENT, outcome="success" if error is None else "error"
            ).inc()
            handled[command.id] = (outcome, errors, None)
            outcomes.append(
                {
                    "sink": self.name,
                    "command_id": command.id,
                    "outcome": outcome.value,
                    "salesforce_id": None,
                    "errors": [asdict(e) for e in errors],
                }
            )
            self._outbox.stage(result_event(command, outcome, errors))
        memory.store(connection, (), outcomes, self._outbox.rows)

    def _send(self, command: NotificationRequested) -> DeliveryError | None:
        personal: list[str] = []
        if self.privacy is not None:
            (opened,) = self.privacy.unseal([command])
            if ERASED in (opened.recipient, opened.title, opened.body):
                return PermanentDelivery(
                    "SUBJECT_ERASED", "the personal data of the notification was erased"
                )
            personal = [
                value
                for value, sealed in zip(
                    (opened.recipient, opened.title, opened.body),
                    (command.recipient, command.title, command.body),
                    strict=True,
                )
                if value != sealed
            ]
            command = opened
        transport = self.transports.get(command.channel.value)
        if transport is None:
            variable = {"SLACK": "SFE_NOTIFY_SLACK_WEBHOOK_URL", "EMAIL": "SFE_NOTIFY_SMTP_HOST"}
            return PermanentDelivery(
                "NO_TRANSPORT",
                f"no {command.channel.value} transport configured "
                f"(set {variable.get(command.channel.value, 'a transport')})",
            )
        if personal:
            transport = ScrubbingTransport(transport, personal)
        try:
            attempts = deliver(transport, command, self.policy, self.stop)
        except PermanentDelivery as exc:
            log.warning("notification %s not delivered: %s", command.id, exc)
            return exc
        log.info(
            "notification %s delivered via %s (%d attempt%s)",
            command.id,
            command.channel.value,
            attempts,
            "" if attempts == 1 else "s",
        )
        return None


class ScrubbingTransport:
    """A transport whose errors never quote the notification's personal values.

    A mail server's refusal often quotes the address (``550 <ada@example.org>: no such
    user``); the error travels to logs, ``dlq.notifications`` and the result event, so
    the opened personal values are replaced by ``<personal data>`` in it.
    """

    def __init__(self, inner: Transport, personal: Sequence[str]) -> None:
        self.inner = inner
        self.channel = inner.channel
        self.personal = sorted((p for p in personal if p), key=len, reverse=True)

    def send(self, command: NotificationRequested) -> None:
        """Send through the inner transport; re-raise its errors scrubbed."""
        try:
            self.inner.send(command)
        except TransientDelivery as exc:
            raise TransientDelivery(exc.code, self.scrub(exc.message), exc.retry_after) from None
        except DeliveryError as exc:
            raise type(exc)(exc.code, self.scrub(exc.message)) from None

    def scrub(self, text: str) -> str:
        """``text`` with every personal value replaced."""
        for value in self.personal:
            text = text.replace(value, "<personal data>")
        return text


def run_sink(
    runner: ProjectionRunner,
    sink: NotificationSink,
    engine: Engine,
    producer: Producer,
    stop: threading.Event,
) -> None:
    """Send batches and publish their results until ``stop`` is set.

    A stop during a retry wait abandons the batch in hand uncommitted; the next start
    consumes it again from the stored positions (notifications it had already sent
    in that batch are sent again: see the module's note on at-least-once delivery).
    """
    memory.publish_outbox(engine, producer, sink.name)
    while not stop.is_set():
        try:
            consumed = runner.process_batch().consumed
        except SinkInterrupted:
            log.info("stopped while waiting to retry; the batch in hand is left for the next start")
            return
        if consumed:
            memory.publish_outbox(engine, producer, sink.name)


def _require(value: object, variable: str, why: str) -> None:
    if value is None or value == "":
        raise SettingsError(f"missing setting {variable}: {why}")


def transports_from(settings: Settings) -> list[Transport]:
    """The transports ``SFE_NOTIFY_*`` configures; else :class:`SettingsError` naming the variable.

    The sink is off by default: with neither a Slack webhook nor an SMTP host it
    refuses to start.
    """
    transports: list[Transport] = []
    if settings.notify_sink_name == settings.sink_name:
        raise SettingsError(
            f"invalid setting SFE_NOTIFY_SINK_NAME: {settings.notify_sink_name!r} is also "
            "SFE_SINK_NAME (the Salesforce sink's); the two sinks need their own names"
        )
    for variable, path in (
        ("SFE_NOTIFY_SLACK_CA_BUNDLE", settings.notify_slack_ca_bundle),
        ("SFE_NOTIFY_SMTP_CA_BUNDLE", settings.notify_smtp_ca_bundle),
    ):
        if path is not None and not path.is_file():
            raise SettingsError(f"invalid setting {variable}: no such file {str(path)!r}")
    if settings.notify_slack_webhook_url is not None:
        transports.append(
            SlackWebhookTransport(
                settings.notify_slack_webhook_url,
                timeout_s=settings.notify_slack_timeout_seconds,
                ca_bundle=settings.notify_slack_ca_bundle,
            )
        )
    if settings.notify_smtp_host:
        _require(settings.notify_smtp_from, "SFE_NOTIFY_SMTP_FROM", "the From address of e-mails")
        sender = str(settings.notify_smtp_from)
        if not is_address(parseaddr(sender)[1]):
            raise SettingsError(
                f"invalid setting SFE_NOTIFY_SMTP_FROM: expected an e-mail address, got {sender!r}"
            )
        if settings.notify_smtp_username:
            _require(
                settings.notify_smtp_password,
                "SFE_NOTIFY_SMTP_PASSWORD",
                "SFE_NOTIFY_SMTP_USERNAME is set, so the server is logged in to",
            )
        fallback = settings.notify_email_fallback
        if fallback and not is_address(fallback):
            raise SettingsError(
                f"invalid setting SFE_NOTIFY_EMAIL_FALLBACK: expected an e-mail address, "
                f"got {fallback!r}"
            )
        transports.append(
            SmtpTransport(
                settings.notify_smtp_host,
                settings.notify_smtp_port,
                sender,
                security=settings.notify_smtp_security,
                username=settings.notify_smtp_username,
                password=settings.notify_smtp_password,
                timeout_s=settings.notify_smtp_timeout_seconds,
                ca_bundle=settings.notify_smtp_ca_bundle,
                aliases=parse_aliases(settings.notify_email_aliases),
                fallback=fallback,
            )
        )
    if not transports:
        raise SettingsError(
            "the notification sink is off: no transport is configured. Set "
            "SFE_NOTIFY_SLACK_WEBHOOK_URL (a Slack incoming webhook) and/or "
            "SFE_NOTIFY_SMTP_HOST with SFE_NOTIFY_SMTP_FROM (e-mail)"
        )
    return transports


def retry_policy(settings: Settings) -> RetryPolicy:
    """The retry policy of ``SFE_NOTIFY_MAX_ATTEMPTS``, ``_BACKOFF_SECONDS``, ``_RETRY_SECONDS``."""
    return RetryPolicy(
        max_attempts=settings.notify_max_attempts,
        backoff_base_s=settings.notify_backoff_seconds,
        budget_s=settings.notify_retry_seconds,
    )
