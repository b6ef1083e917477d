"""Slack payloads, e-mail messages, recipient resolution and the sink's configuration checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from projections.notifications import result_event, transports_from
from projections.notify.slack import SECTION_LIMIT, SlackWebhookTransport, escape, payload
from projections.notify.smtp import SmtpTransport, is_address, message, parse_aliases, resolve
from projections.notify.transport import PermanentDelivery
from schema_registry.events import (
    CommandOutcome,
    NotificationChannel,
    NotificationRequested,
    SalesforceError,
)
from sfe.cli import main
from sfe.settings import Settings, SettingsError, load_settings

WEBHOOK = "https://hooks.slack.example/services/T000/B000/very-secret-token"


def command(
    channel: NotificationChannel = NotificationChannel.SLACK, **kw: Any
) -> NotificationRequested:
    fields: dict[str, Any] = {
        "id": "5f0c8a1e-0000-5000-8000-000000000001",
        "source": "agents.lead_qualification",
        "subject": "00Q000000000001AAA",
        "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "correlation_id": "flow-1",
        "channel": channel,
        "recipient": "#high-value-leads",
        "template": "high_value_lead",
        "title": "High-value lead: Acme <Corp> & Co (91)",
        "body": "Score 91 > 80",
    }
    return NotificationRequested(**{**fields, **kw})


def test_slack_payload_carries_the_text_the_channel_and_the_command_id() -> None:
    body = payload(command())
    text = "*High-value lead: Acme &lt;Corp&gt; &amp; Co (91)*\nScore 91 &gt; 80"
    assert body == {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "notification 5f0c8a1e-0000-5000-8000-000000000001 · "
                        "high_value_lead · 00Q000000000001AAA",
                    }
                ],
            },
        ],
        "channel": "#high-value-leads",
    }


def test_slack_payload_is_clipped_to_the_section_limit_and_omits_an_empty_channel() -> None:
    body = payload(command(body="x" * 5000, recipient=" "))
    assert len(body["text"]) == SECTION_LIMIT
    assert body["text"].endswith("…")
    assert "channel" not in body


def test_escape_only_touches_the_reserved_characters() -> None:
    assert escape("a & b <c> *d*") == "a &amp; b &lt;c&gt; *d*"


def test_email_message_uses_the_command_id_as_message_id() -> None:
    mail = message(
        command(NotificationChannel.EMAIL, recipient="ae@example.com", body="Hello\nthere"),
        "SFE Alerts <alerts@sfe.example.com>",
        "ae@example.com",
    )
    assert mail["Message-ID"] == "<5f0c8a1e-0000-5000-8000-000000000001@sfe.example.com>"
    assert mail["X-SFE-Command-Id"] == "5f0c8a1e-0000-5000-8000-000000000001"
    assert mail["From"] == "SFE Alerts <alerts@sfe.example.com>"
    assert mail["To"] == "ae@example.com"
    assert mail["Subject"] == "High-value lead: Acme <Corp> & Co (91)"
    assert mail["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"
    assert mail["X-SFE-Recipient"] is None
    assert mail.get_content() == "Hello\nthere\n"


def test_email_to_an_alias_names_the_original_recipient() -> None:
    mail = message(
        command(NotificationChannel.EMAIL, recipient="005000000000001AAA"),
        "alerts@sfe.example.com",
        "owner@example.com",
    )
    assert mail["To"] == "owner@example.com"
    assert mail["X-SFE-Recipient"] == "005000000000001AAA"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ae@example.com", True),
        ("first.last+tag@mail.example.co.uk", True),
        ("marketing-automation", False),
        ("005000000000001AAA", False),
        ("Name <ae@example.com>", False),
        ("ae@localhost", False),
        ("@example.com", False),
    ],
)
def test_is_address(text: str, expected: bool) -> None:
    assert is_address(text) is expected


def test_recipients_resolve_to_addresses_aliases_or_the_fallback() -> None:
    aliases = parse_aliases(" Marketing-Automation = mops@example.com ,005X=owner@example.com,")
    assert aliases == {"marketing-automation": "mops@example.com", "005x": "owner@example.com"}
    assert resolve("ae@example.com", aliases, None) == "ae@example.com"
    assert resolve("marketing-automation", aliases, None) == "mops@example.com"
    assert resolve("005x", aliases, "ops@example.com") == "owner@example.com"
    assert resolve("account-owner", aliases, "ops@example.com") == "ops@example.com"
    with pytest.raises(PermanentDelivery) as raised:
        resolve("account-owner", aliases, None)
    assert raised.value.code == "NO_ADDRESS"
    assert "SFE_NOTIFY_EMAIL_ALIASES" in raised.value.message


@pytest.mark.parametrize("text", ["x", "a=b", "=a@b.io", "a=Name <a@b.io>"])
def test_malformed_aliases_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="name=address"):
        parse_aliases(text)


def test_a_result_names_channel_recipient_and_outcome() -> None:
    failed = result_event(
        command(),
        CommandOutcome.REJECTED,
        (SalesforceError(status_code="SLACK_404", message="channel_not_found"),),
    )
    assert failed.causation_id == "5f0c8a1e-0000-5000-8000-000000000001"
    assert failed.correlation_id == "flow-1"
    assert failed.command_type == "NotificationRequested"
    assert failed.target == "slack/#high-value-leads"
    assert failed.operation == "SLACK"
    assert failed.errors[0].status_code == "SLACK_404"
    repeat = result_event(command(), CommandOutcome.ALREADY_APPLIED, purpose="result:repeat")
    assert repeat.id != failed.id
    assert result_event(command(), CommandOutcome.APPLIED).id == failed.id


# Configuration: off by default, and every problem names its variable.


def test_without_a_transport_the_sink_refuses_to_start() -> None:
    with pytest.raises(SettingsError) as raised:
        transports_from(Settings())
    assert "SFE_NOTIFY_SLACK_WEBHOOK_URL" in str(raised.value)
    assert "SFE_NOTIFY_SMTP_HOST" in str(raised.value)


def test_the_cli_names_the_setting_and_exits_with_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["sink", "notifications"], obj=Settings())
    assert result.exit_code == 2
    assert "no transport is configured" in result.output
    assert "SFE_NOTIFY_SLACK_WEBHOOK_URL" in result.output


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"notify_smtp_host": "mail.example.com"}, "SFE_NOTIFY_SMTP_FROM"),
        (
            {"notify_smtp_host": "mail.example.com", "notify_smtp_from": "not an address"},
            "SFE_NOTIFY_SMTP_FROM",
        ),
        (
            {
                "notify_smtp_host": "mail.example.com",
                "notify_smtp_from": "a@example.com",
                "notify_smtp_username": "a",
            },
            "SFE_NOTIFY_SMTP_PASSWORD",
        ),
        (
            {
                "notify_smtp_host": "mail.example.com",
                "notify_smtp_from": "a@example.com",
                "notify_email_fallback": "nobody",
            },
            "SFE_NOTIFY_EMAIL_FALLBACK",
        ),
        (
            {"notify_slack_webhook_url": WEBHOOK, "notify_slack_ca_bundle": Path("/no/such.pem")},
            "SFE_NOTIFY_SLACK_CA_BUNDLE",
        ),
        (
            {"notify_slack_webhook_url": WEBHOOK, "notify_sink_name": "salesforce"},
            "SFE_NOTIFY_SINK_NAME",
        ),
    ],
)
def test_incomplete_configuration_names_the_variable(
    settings: dict[str, Any], variable: str
) -> None:
    with pytest.raises(SettingsError, match=variable):
        transports_from(Settings(**settings))


def test_configured_transports() -> None:
    transports = transports_from(
        Settings(
            notify_slack_webhook_url=WEBHOOK,
            notify_smtp_host="mail.example.com",
            notify_smtp_from="alerts@example.com",
            notify_email_aliases="marketing-automation=mops@example.com",
        )
    )
    assert [type(t) for t in transports] == [SlackWebhookTransport, SmtpTransport]
    assert [t.channel for t in transports] == [NotificationChannel.SLACK, NotificationChannel.EMAIL]
    smtp = transports[1]
    assert isinstance(smtp, SmtpTransport)
    assert (smtp.port, smtp.security, smtp.aliases) == (
        587,
        "starttls",
        {"marketing-automation": "mops@example.com"},
    )


def test_a_plain_http_webhook_is_refused_without_printing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SFE_NOTIFY_SLACK_WEBHOOK_URL", "http://hooks.example/services/secret-token")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "SFE_NOTIFY_SLACK_WEBHOOK_URL" in str(raised.value)
    assert "secret-token" not in str(raised.value)


def test_the_webhook_url_never_prints() -> None:
    settings = Settings(notify_slack_webhook_url=WEBHOOK)
    assert "very-secret-token" not in repr(settings)
    assert "very-secret-token" not in str(settings.notify_slack_webhook_url)


def test_malformed_aliases_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFE_NOTIFY_EMAIL_ALIASES", "marketing-automation")
    with pytest.raises(SettingsError, match="SFE_NOTIFY_EMAIL_ALIASES"):
        load_settings()
