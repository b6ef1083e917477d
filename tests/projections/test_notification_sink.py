"""The notification sink against the real broker and PostgreSQL, a local HTTPS server standing
in for Slack's incoming webhook and a real SMTP server (aiosmtpd) receiving the mail.

Deliveries are counted where they land (the webhook's requests, the mailbox), so
"once per command id" is measured at the receiver.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from confluent_kafka import Producer
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, delete

from projections.notifications import NotificationSink, run_sink
from projections.notify.slack import SlackWebhookTransport
from projections.notify.smtp import SmtpTransport
from projections.notify.transport import RetryPolicy, Transport
from projections.runner import ProjectionRunner
from projections.tables import projection_offsets, salesforce_commands, salesforce_outbox
from schema_registry.codec import Codec
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    EventDeadLettered,
    NotificationChannel,
    NotificationRequested,
)
from schema_registry.ids import derived_event_id
from sfe.settings import Settings
from simulator.tls import TlsFiles, ensure_tls
from tests.kafka_helpers import catalogue_topics, consume_records
from tests.ports import free_port

pytestmark = pytest.mark.integration

SECRET_PATH = "/services/T0000/B0000/sfe-test-secret-token"
SMTP_USER, SMTP_PASSWORD = "sink", "mail-password"
AGENT = "projections.notifications"


# The receivers.


class SlackStandIn:
    """An HTTPS server answering like a Slack incoming webhook; responses can be scripted."""

    def __init__(self, tls: TlsFiles) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], str]] = []
        self.latency_s = 0.0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != SECRET_PATH:
                    status, headers, text = 404, {}, "no_service"
                else:
                    time.sleep(stand_in.latency_s)
                    with stand_in.lock:
                        stand_in.bodies.append(json.loads(body))
                        status, headers, text = (
                            stand_in.script.pop(0) if stand_in.script else (200, {}, "ok")
                        )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert, tls.server_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def delivered(self) -> list[str]:
        """The command ids of the messages received, from their context blocks."""
        with self.lock:
            return [body["blocks"][1]["elements"][0]["text"].split()[1] for body in self.bodies]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd handler keeping every message; refuses the addresses in ``refuse``."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: set[str] = set()
        self.logins: list[bytes] = []

    async def handle_RCPT(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        assert session.ssl is not None, "STARTTLS before the mail"
        mail = email.message_from_bytes(bytes(envelope.content or b""), policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append(mail)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        if ok:
            self.logins.append(data.login)
        return AuthResult(success=ok)

    def delivered(self) -> list[str]:
        return [str(mail["X-SFE-Command-Id"]) for mail in self.messages]


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return ensure_tls(tmp_path / "tls", "127.0.0.1")


@pytest.fixture
def slack(tls: TlsFiles) -> Iterator[SlackStandIn]:
    server = SlackStandIn(tls)
    yield server
    server.stop()


@pytest.fixture
def mailbox(tls: TlsFiles) -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server that requires STARTTLS and a login."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    box = Mailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=box.authenticate,
        auth_required=True,
    )
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def prefix(stack: Settings) -> Iterator[str]:
    with catalogue_topics(stack) as prefix:
        yield prefix


@pytest.fixture
def engine(stack: Settings, prefix: str) -> Iterator[Engine]:
    engine = create_engine(stack.sqlalchemy_url())
    yield engine
    with engine.begin() as connection:  # the sink's memory, outbox and positions
        connection.execute(
            delete(salesforce_commands).where(salesforce_commands.c.sink == name(prefix))
        )
        connection.execute(
            delete(salesforce_outbox).where(salesforce_outbox.c.sink == name(prefix))
        )
        connection.execute(
            delete(projection_offsets).where(projection_offsets.c.projection == name(prefix))
        )
    engine.dispose()


def name(prefix: str) -> str:
    return f"test-notify-{prefix}"


def smtp_transport(tls: TlsFiles, port: int, **kw: Any) -> SmtpTransport:
    return SmtpTransport(
        "127.0.0.1",
        port,
        "SFE Alerts <alerts@sfe.example.com>",
        security="starttls",
        username=SMTP_USER,
        password=SecretStr(SMTP_PASSWORD),
        timeout_s=10,
        ca_bundle=tls.ca_cert,
        **kw,
    )


# Commands in, results out.


def notification(
    channel: NotificationChannel, recipient: str, n: int, subject: str = "00Q000000000001AAA"
) -> NotificationRequested:
    return NotificationRequested(
        id=str(uuid.uuid4()),
        source="test",
        subject=subject,
        time=datetime.now(UTC),
        channel=channel,
        recipient=recipient,
        template="high_value_lead",
        title=f"High-value lead {n}",
        body=f"Lead {n} scored {80 + n % 20}",
    )


def send(stack: Settings, prefix: str, commands: list[NotificationRequested]) -> dict[str, bytes]:
    """Append ``commands`` to commands.notifications; their encoded values by id."""
    codec = Codec(topic_prefix=prefix)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5})
    topic = prefix + "commands.notifications"
    values: dict[str, bytes] = {}
    for command in commands:
        encoded = codec.encode(topic, command)
        values[command.id] = encoded.value
        headers: list[tuple[str, str | bytes | None]] = list(encoded.headers)
        producer.produce(topic, encoded.value, command.subject.encode(), headers=headers)
        producer.poll(0)
    assert producer.flush(30) == 0
    return values


def read(stack: Settings, prefix: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    codec = Codec(topic_prefix=prefix)
    records = consume_records(stack, prefix + topic, expected, timeout=timeout)
    return [codec.decode(prefix + topic, value, headers) for _, value, headers in records]


def results(
    stack: Settings, prefix: str, expected: int, timeout: float = 60
) -> list[CommandExecuted]:
    return read(stack, prefix, "command.results", expected, timeout)


class RecordingStop(threading.Event):
    """The sink's stop event, remembering the retry waits it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.waits.append(timeout)
        return super().wait(timeout)


class RunningSink:
    """The sink on a background thread, as `sfe sink notifications` runs it."""

    def __init__(
        self,
        stack: Settings,
        engine: Engine,
        prefix: str,
        transports: list[Transport],
        policy: RetryPolicy | None = None,
        batch_size: int = 1,
    ) -> None:
        self.stop = RecordingStop()
        sink = NotificationSink(
            name(prefix),
            Codec(topic_prefix=prefix),
            transports,
            policy or RetryPolicy(backoff_base_s=0.05, backoff_max_s=0.5, budget_s=10),
            self.stop,
        )
        self.runner = ProjectionRunner(stack.kafka_bootstrap, engine, sink, batch_size=batch_size)
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
        self.thread = threading.Thread(
            target=run_sink, args=(self.runner, sink, engine, producer, self.stop), daemon=True
        )

    def __enter__(self) -> RunningSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        self.runner.close()
        assert not self.thread.is_alive()


# The tests.


def test_each_command_is_delivered_once_across_redelivery_restart_and_replay(
    stack: Settings,
    engine: Engine,
    prefix: str,
    tls: TlsFiles,
    slack: SlackStandIn,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    slack_commands = [
        notification(NotificationChannel.SLACK, "#high-value-leads", n) for n in range(5)
    ]
    mail_commands = [
        notification(NotificationChannel.EMAIL, f"ae{n}@example.com", n) for n in range(4)
    ] + [notification(NotificationChannel.EMAIL, "marketing-automation", 9)]
    commands = slack_commands + mail_commands
    ids = {c.id for c in commands}

    def transports() -> list[Transport]:
        return [
            SlackWebhookTransport(SecretStr(slack.url), timeout_s=5, ca_bundle=tls.ca_cert),
            smtp_transport(tls, port, aliases={"marketing-automation": "mops@example.com"}),
        ]

    send(stack, prefix, commands)
    with RunningSink(stack, engine, prefix, transports(), batch_size=4):
        first = results(stack, prefix, len(commands))
    assert {r.causation_id for r in first} == ids
    assert {r.outcome for r in first} == {CommandOutcome.APPLIED}
    assert {r.id for r in first} == {derived_event_id(i, AGENT, "result") for i in ids}
    by_cause = {r.causation_id: r for r in first}
    assert by_cause[slack_commands[0].id].target == "slack/#high-value-leads"
    assert by_cause[mail_commands[0].id].target == "email/ae0@example.com"
    assert sorted(slack.delivered()) == sorted(c.id for c in slack_commands)
    assert slack.bodies[0]["channel"] == "#high-value-leads"
    assert "*High-value lead " in slack.bodies[0]["text"]
    assert sorted(box.delivered()) == sorted(c.id for c in mail_commands)
    assert len(box.logins) == len(mail_commands)
    mail = {str(m["X-SFE-Command-Id"]): m for m in box.messages}
    alias = mail[mail_commands[-1].id]
    assert alias["Message-ID"] == f"<{mail_commands[-1].id}@sfe.example.com>"
    assert alias["To"] == "mops@example.com"
    assert alias["X-SFE-Recipient"] == "marketing-automation"
    assert alias["Subject"] == "High-value lead 9"
    assert alias.get_content().strip() == "Lead 9 scored 89"
    assert ("alerts@sfe.example.com", ["ae1@example.com"]) in box.envelopes

    # A redelivery (the same commands appended again), consumed by a restarted sink.
    send(stack, prefix, commands)
    with RunningSink(stack, engine, prefix, transports()):
        second = results(stack, prefix, 2 * len(commands))[len(commands) :]
    assert {r.causation_id for r in second} == ids
    assert {r.outcome for r in second} == {CommandOutcome.ALREADY_APPLIED}
    assert {r.id for r in second} == {derived_event_id(i, AGENT, "result:repeat") for i in ids}

    # A replay from offset zero: every record again, nothing sent again.
    with engine.begin() as connection:
        connection.execute(
            delete(projection_offsets).where(projection_offsets.c.projection == name(prefix))
        )
    with RunningSink(stack, engine, prefix, transports(), batch_size=50):
        replayed = results(stack, prefix, 4 * len(commands))[2 * len(commands) :]
    assert len(replayed) == 2 * len(commands)
    assert {r.outcome for r in replayed} == {CommandOutcome.ALREADY_APPLIED}
    assert len(slack.bodies) == len(slack_commands)
    assert len(box.messages) == len(mail_commands)


def test_rate_limits_and_server_errors_are_retried_honouring_retry_after(
    stack: Settings, engine: Engine, prefix: str, tls: TlsFiles, slack: SlackStandIn
) -> None:
    slack.script = [
        (429, {"Retry-After": "1"}, "rate_limited"),
        (503, {}, "service_unavailable"),
    ]
    command = notification(NotificationChannel.SLACK, "#alerts", 1)
    send(stack, prefix, [command])
    transport = SlackWebhookTransport(SecretStr(slack.url), timeout_s=5, ca_bundle=tls.ca_cert)
    with RunningSink(stack, engine, prefix, [transport]) as sink:
        [result] = results(stack, prefix, 1)
    assert result.outcome is CommandOutcome.APPLIED
    assert result.errors == ()
    assert slack.delivered() == [command.id] * 3, "two refusals, then one delivery"
    retry_waits = [w for w in sink.stop.waits if w < 30]
    assert retry_waits[0] >= 1.0, "Retry-After: 1 was honoured"
    # The second retry backs off with full jitter: at most base x 2 = 0.1 s.
    assert retry_waits[1] <= 0.1, "then full-jitter backoff from the base"
    assert not read(stack, prefix, "dlq.notifications", 1, timeout=2)


def test_refusals_fail_the_command_and_dead_letter_it_while_the_rest_go_through(
    stack: Settings,
    engine: Engine,
    prefix: str,
    tls: TlsFiles,
    slack: SlackStandIn,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    box.refuse = {"gone@example.com"}
    slack.script = [(404, {}, "channel_not_found")]
    archived = notification(NotificationChannel.SLACK, "#archived", 1, subject="001A")
    refused = notification(NotificationChannel.EMAIL, "gone@example.com", 2, subject="001B")
    nobody = notification(NotificationChannel.EMAIL, "account-owner", 3, subject="001C")
    fine = notification(NotificationChannel.SLACK, "#alerts", 4, subject="001D")
    values = send(stack, prefix, [archived, refused, nobody, fine])
    transports: list[Transport] = [
        SlackWebhookTransport(SecretStr(slack.url), timeout_s=5, ca_bundle=tls.ca_cert),
        smtp_transport(tls, port),
    ]
    with RunningSink(stack, engine, prefix, transports):
        everything = results(stack, prefix, 4)
        letters = read(stack, prefix, "dlq.notifications", 3)
    by_cause = {r.causation_id: r for r in everything}
    assert by_cause[fine.id].outcome is CommandOutcome.APPLIED
    failed = {c.id: by_cause[c.id] for c in (archived, refused, nobody)}
    assert {r.outcome for r in failed.values()} == {CommandOutcome.REJECTED}
    assert [(e.status_code, e.message) for e in failed[archived.id].errors] == [
        ("SLACK_404", "channel_not_found")
    ]
    assert [e.status_code for e in failed[refused.id].errors] == ["SMTP_550"]
    assert "no such user" in failed[refused.id].errors[0].message
    assert [e.status_code for e in failed[nobody.id].errors] == ["NO_ADDRESS"]
    assert slack.delivered() == [archived.id, fine.id], "a 404 is not retried"
    assert box.messages == []
    assert all(isinstance(letter, EventDeadLettered) for letter in letters)
    by_key = {letter.original_key: letter for letter in letters}
    assert set(by_key) == {b"001A", b"001B", b"001C"}
    assert by_key[b"001A"].original_value == values[archived.id]
    assert by_key[b"001A"].reason == "SLACK_404: channel_not_found"
    assert by_key[b"001A"].original_topic == prefix + "commands.notifications"
    assert by_key[b"001C"].reason.startswith("NO_ADDRESS: recipient 'account-owner'")


def test_sigkill_then_restart_resends_at_most_the_batch_in_flight(
    stack: Settings, prefix: str, tls: TlsFiles, slack: SlackStandIn, tmp_path: Path
) -> None:
    commands = [notification(NotificationChannel.SLACK, "#alerts", n) for n in range(12)]
    send(stack, prefix, commands)
    slack.latency_s = 0.2
    env = {
        **os.environ,
        "SFE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "SFE_DATABASE_URL": stack.sqlalchemy_url(),
        "SFE_TOPIC_PREFIX": prefix,
        "SFE_NOTIFY_SINK_NAME": name(prefix),
        "SFE_NOTIFY_SLACK_WEBHOOK_URL": slack.url,
        "SFE_NOTIFY_SLACK_CA_BUNDLE": str(tls.ca_cert),
        "SFE_METRICS_PORT": "0",
        "SFE_LOG_LEVEL": "DEBUG",
    }
    logs = tmp_path / "sink.log"

    def start() -> subprocess.Popen[bytes]:
        with logs.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "sfe.cli", "sink", "notifications"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    engine = create_engine(stack.sqlalchemy_url())
    first = start()
    try:
        deadline = time.monotonic() + 60
        while len(slack.bodies) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        first.kill()
        first.wait(10)
        assert len(slack.bodies) < len(commands), "killed mid-stream"
        second = start()
        try:
            # An outbox row produced just before the kill is produced again (same event id),
            # so count distinct commands, not records.
            deadline = time.monotonic() + 90
            everything = results(stack, prefix, len(commands))
            while {r.causation_id for r in everything} != {c.id for c in commands}:
                assert time.monotonic() < deadline, "a command never got its result"
                everything = results(stack, prefix, len(everything) + 1, timeout=5)
            everything = results(stack, prefix, 10**6, timeout=3)  # whatever else arrives
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
        assert second.returncode == 0, logs.read_text()[-2000:]
    finally:
        with engine.begin() as connection:
            for table, column in (
                (salesforce_commands, salesforce_commands.c.sink),
                (salesforce_outbox, salesforce_outbox.c.sink),
                (projection_offsets, projection_offsets.c.projection),
            ):
                connection.execute(delete(table).where(column == name(prefix)))
        engine.dispose()
    delivered = slack.delivered()
    assert set(delivered) == {c.id for c in commands}
    assert len(delivered) - len(set(delivered)) <= 1, "at most the one command in flight twice"
    assert len({r.id for r in everything}) == len(commands), "one result per command"
    assert {r.outcome for r in everything} == {CommandOutcome.APPLIED}
    text = logs.read_text()
    assert "delivered via SLACK" in text, "the debug log was written"
    assert "sfe-test-secret-token" not in text, "the webhook URL is never logged"
